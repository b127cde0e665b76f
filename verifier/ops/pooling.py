"""MaxPool (2-D). AveragePool is linear and is loaded as a convolution.

The window structure is a constant index table `window` (n_out, k) of flat input positions,
-1 for padding, built by the loader. Relaxation: max >= the input with the largest lower bound
(j*); max <= x_j* when j* dominates its window (l_j* >= u of every other), else max <= max u.
"""
from __future__ import annotations

import math

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
    exact = True

    def forward(self, node, x):
        a = node.attrs
        lead = x.shape[: x.dim() - 3]
        padded = F.pad(x.reshape(-1, *x.shape[-3:]), a["torch_pads"], value=float("-inf"))
        y = F.max_pool2d(padded, a["kernel"], a["stride"], 0, a["dilation"], a["ceil_mode"])
        return y.reshape(*lead, *y.shape[1:])

    def float_error(self, node, errors, magnitudes):
        return self.forward(node, errors[0])  # exact, and 1-Lipschitz in the max norm

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

    def forward_linear(self, node, fns, state):
        """Lower: the function of the input with the largest lower bound; upper: the same when
        it dominates its window, else the constant max of the window's upper bounds."""
        (a_lo, b_lo, a_up, b_up), = fns
        source, exact, max_upper = state.relaxation(node)
        shape = (b_lo.shape[0], *node.shape)
        pick_a = source.unsqueeze(1).expand(-1, a_lo.shape[1], -1)
        lower_a = a_lo.flatten(2).gather(2, pick_a)
        upper_a = torch.where(exact.unsqueeze(1), a_up.flatten(2).gather(2, pick_a), 0.0)
        lower_b = b_lo.flatten(1).gather(1, source)
        upper_b = torch.where(exact, b_up.flatten(1).gather(1, source), max_upper)
        return (lower_a.reshape(*pick_a.shape[:2], *node.shape), lower_b.reshape(shape),
                upper_a.reshape(*pick_a.shape[:2], *node.shape), upper_b.reshape(shape))

    def backward(self, node, lam, state, alpha=None):
        source, exact, max_upper = state.relaxation(node)  # each (B, n_out)
        lam = lam.flatten(2)
        pos, neg = lam.clamp(min=0), lam.clamp(max=0)
        exact = exact.unsqueeze(1).to(lam.dtype)
        coefficient = pos + neg * exact
        bias = (neg * (1 - exact) * max_upper.unsqueeze(1)).sum(-1)
        in_shape = state.shape_of(node.inputs[0])
        lam_in = lam.new_zeros(*lam.shape[:2], math.prod(in_shape))
        lam_in.scatter_add_(2, source.unsqueeze(1).expand_as(coefficient), coefficient)
        return [lam_in.reshape(*lam.shape[:2], *in_shape)], bias

