"""ReduceSum over some axes (ReduceMean is a ReduceSum followed by a scale): linear."""
from __future__ import annotations

from verifier.float32 import gamma
from verifier.ops.base import NonnegativeLinearRule


def _dims(node, lead: int) -> list[int]:
    """The reduced axes of a tensor with `lead` dims in front of the per-sample ones."""
    return [axis + lead for axis in node.attrs["axes"]]


class ReduceSum(NonnegativeLinearRule):
    """attrs: axes (per-sample axes, sorted), keepdims."""

    def forward(self, node, x):
        return x.sum(dim=_dims(node, 1), keepdim=node.attrs["keepdims"])

    def backward(self, node, lam, state, alpha=None):
        in_shape = state.shape_of(node.inputs[0])
        if not node.attrs["keepdims"]:
            for dim in _dims(node, 2):
                lam = lam.unsqueeze(dim)
        return [lam.expand(*lam.shape[:2], *in_shape)], None

    def float_error(self, node, errors, magnitudes):
        """A float32 sum of n terms in any order: gamma_(n-1) times the sum of magnitudes."""
        (e,), (m,) = errors, magnitudes
        count = 1
        for axis in node.attrs["axes"]:
            count *= m.shape[axis + 1]
        return self.forward(node, e) + gamma(max(count - 1, 0)) * self.forward(node, m)
