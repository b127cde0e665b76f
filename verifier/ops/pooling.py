"""MaxPool (2-D). AveragePool is linear and is loaded as a convolution.

The window structure is a constant index table `window` (n_out, k) of flat input positions,
-1 for padding, built by the loader. Relaxation: max >= the input with the largest lower bound
(j*); max <= x_j* when j* dominates its window (l_j* >= u of every other), else max <= max u.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from verifier.ops.base import Rule


def _windows(node, x, fill):
    """x (B, *in) -> (B, n_out, k) values gathered through the window table."""
    flat = x.flatten(1)
    flat = torch.cat([flat, flat.new_full((flat.shape[0], 1), fill)], dim=1)  # slot for -1
    index = node.tensors["window"]
    index = torch.where(index < 0, flat.shape[1] - 1, index)
    return flat[:, index]


class MaxPool(Rule):
    nonlinear = True

    def forward(self, node, x):
        a = node.attrs
        lead = x.shape[: x.dim() - 3]
        padded = F.pad(x.reshape(-1, *x.shape[-3:]), a["torch_pads"], value=float("-inf"))
        y = F.max_pool2d(padded, a["kernel"], a["stride"], 0, a["dilation"], a["ceil_mode"])
        return y.reshape(*lead, *y.shape[1:])

    def ibp(self, node, bounds):
        l, u = bounds
        shape = (l.shape[0], *node.shape)
        return (_windows(node, l, float("-inf")).amax(-1).reshape(shape),
                _windows(node, u, float("-inf")).amax(-1).reshape(shape))

    def relax(self, node, l, u):
        lw, uw = _windows(node, l, float("-inf")), _windows(node, u, float("-inf"))
        best_lower, pick = lw.max(-1)
        others_upper = uw.scatter(-1, pick.unsqueeze(-1), float("-inf")).amax(-1)
        exact = best_lower >= others_upper
        source = node.tensors["window"][torch.arange(pick.shape[1], device=pick.device), pick]
        return source, exact, uw.amax(-1)

    def backward(self, node, lam, state):
        source, exact, max_upper = state.relaxation(node)  # each (B, n_out)
        lam = lam.flatten(2)
        pos, neg = lam.clamp(min=0), lam.clamp(max=0)
        exact = exact.unsqueeze(1).to(lam.dtype)
        coefficient = pos + neg * exact
        bias = (neg * (1 - exact) * max_upper.unsqueeze(1)).sum(-1)
        in_shape = state.shape_of(node.inputs[0])
        lam_in = lam.new_zeros(*lam.shape[:2], _numel(in_shape))
        lam_in.scatter_add_(2, source.unsqueeze(1).expand_as(coefficient), coefficient)
        return [lam_in.reshape(*lam.shape[:2], *in_shape)], bias


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n
