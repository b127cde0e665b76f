"""Index ops with constant indices, as fixed linear maps on the flattened tensor.

- `take`: out[j] = sum_t w[j, t] x[index[j, t]], with constant flat indices (n_out, k) and
  optional constant weights (k = 1 and no weights: a plain selection). Gather, GatherElements
  and nearest-neighbour Resize/Upsample are selections; linear Resize mixes 2^d taps.
- `place`: out[position[i]] = x[i], zero elsewhere (ScatterND's updates; the loader adds the
  kept part of the data separately).

Both are exact linear maps: IBP by centre and radius, CROWN by the transposed map (a scatter
or a gather of the coefficients), forward mode through the coefficients.
"""
from __future__ import annotations

import math

from verifier.float32 import gamma
from verifier.ops.base import LinearRule, NonnegativeLinearRule


class Take(LinearRule):
    def _apply(self, node, x, weight):
        index = node.tensors["index"]
        flat = x.reshape(x.shape[0], -1)
        if weight is None:
            out = flat.index_select(1, index[:, 0])
        else:
            out = (flat[:, index] * weight).sum(-1)
        return out.reshape(x.shape[0], *node.shape)

    def forward(self, node, x):
        return self._apply(node, x, node.tensors.get("weight"))

    def linear_part(self, node, x):
        return self.forward(node, x)

    def forward_abs(self, node, r):
        weight = node.tensors.get("weight")
        return self._apply(node, r, None if weight is None else weight.abs())

    def backward(self, node, lam, state, alpha=None):
        index, weight = node.tensors["index"], node.tensors.get("weight")
        in_shape = state.shape_of(node.inputs[0])
        flat = lam.reshape(*lam.shape[:2], -1)
        source = flat.unsqueeze(-1) if weight is None else flat.unsqueeze(-1) * weight
        lam_in = flat.new_zeros(*flat.shape[:2], math.prod(in_shape))
        lam_in.index_add_(2, index.flatten(), source.reshape(*source.shape[:2], -1))
        return [lam_in.reshape(*lam.shape[:2], *in_shape)], None

    def float_error(self, node, errors, magnitudes):
        """A selection is exact. Weighted taps: a sum of k products, in whatever form the
        runtime evaluates it (x0 + t (x1 - x0) for linear Resize), so the rounding is bounded
        with every tap's magnitude at full weight."""
        (e,), (m,) = errors, magnitudes
        weight = node.tensors.get("weight")
        if weight is None:
            return self.forward(node, e)
        k = weight.shape[1]
        return self.forward_abs(node, e) + gamma(4 * k) * self._apply(node, m, (weight != 0).to(m.dtype))


class Place(NonnegativeLinearRule):
    def forward(self, node, x):
        out = x.new_zeros(x.shape[0], math.prod(node.shape))
        out[:, node.tensors["position"]] = x.reshape(x.shape[0], -1)
        return out.reshape(x.shape[0], *node.shape)

    def backward(self, node, lam, state, alpha=None):
        in_shape = state.shape_of(node.inputs[0])
        lam_in = lam.reshape(*lam.shape[:2], -1)[:, :, node.tensors["position"]]
        return [lam_in.reshape(*lam.shape[:2], *in_shape)], None

    def float_error(self, node, errors, magnitudes):
        return self.forward(node, errors[0])  # values are moved, not computed

