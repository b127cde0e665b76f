"""Ops that move values around without arithmetic: reshape, transpose, concat, slice, pad."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from verifier.ops.base import LinearRule, Rule, on_coefficients


class ShapeRule(Rule):
    """Monotone in each element, so IBP applies the op to both ends."""
    exact = True

    def ibp(self, node, *bounds):
        return (self.forward(node, *(b[0] for b in bounds)),
                self.forward(node, *(b[1] for b in bounds)))

    def forward_linear(self, node, fns, state):
        def coefficients(k):
            n_in = fns[0][k].shape[1]
            return self.forward(node, *(f[k].flatten(0, 1) for f in fns)).unflatten(0, (-1, n_in))

        def constants(k):
            return self.forward(node, *(f[k] for f in fns))

        return coefficients(0), constants(1), coefficients(2), constants(3)

    def float_error(self, node, errors, magnitudes):
        """Values are moved, not computed: errors move with them."""
        return self.forward(node, *errors)


class Reshape(ShapeRule):
    def forward(self, node, x):
        return x.reshape(x.shape[0], *node.attrs["target"])

    def backward(self, node, lam, state, alpha=None):
        return [lam.reshape(*lam.shape[:2], *state.shape_of(node.inputs[0]))], None


class Transpose(ShapeRule):
    def forward(self, node, x):
        return x.permute(0, *(p + 1 for p in node.attrs["perm"]))

    def backward(self, node, lam, state, alpha=None):
        perm = node.attrs["perm"]
        inverse = [perm.index(i) for i in range(len(perm))]
        return [lam.permute(0, 1, *(p + 2 for p in inverse))], None


class Concat(ShapeRule):
    def forward(self, node, *xs):
        return torch.cat(xs, dim=node.attrs["axis"] + 1)

    def backward(self, node, lam, state, alpha=None):
        sizes = [state.shape_of(i)[node.attrs["axis"]] for i in node.inputs]
        return list(torch.split(lam, sizes, dim=node.attrs["axis"] + 2)), None


class Slice(ShapeRule):
    """attrs['index']: one python slice (non-negative step) per per-sample axis."""

    def forward(self, node, x):
        return x[(slice(None), *node.attrs["index"])]

    def backward(self, node, lam, state, alpha=None):
        lam_in = lam.new_zeros(*lam.shape[:2], *state.shape_of(node.inputs[0]))
        lam_in[(slice(None), slice(None), *node.attrs["index"])] = lam
        return [lam_in], None


class Pad(LinearRule):
    """Constant padding; attrs['pads'] is a (begin, end) pair per per-sample axis."""
    exact = True

    def _torch_pads(self, node):
        flat = []
        for begin, end in reversed(node.attrs["pads"]):
            flat += [begin, end]
        return flat

    def forward(self, node, x):
        return F.pad(x, self._torch_pads(node), value=node.attrs["value"])

    def linear_part(self, node, x):
        return F.pad(x, self._torch_pads(node), value=0.0)

    def forward_abs(self, node, r):
        return F.pad(r, self._torch_pads(node), value=0.0)

    def float_error(self, node, errors, magnitudes):
        return self.linear_part(node, errors[0])  # the padding value is exact

    def backward(self, node, lam, state, alpha=None):
        index = tuple(slice(b, lam.shape[2 + i] - e) for i, (b, e) in enumerate(node.attrs["pads"]))
        lam_in = lam[(slice(None), slice(None), *index)]
        bias = None
        if node.attrs["value"] != 0:
            bias = node.attrs["value"] * (lam.flatten(2).sum(-1) - lam_in.flatten(2).sum(-1))
        return [lam_in], bias
