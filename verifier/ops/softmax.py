"""Softmax as onnxruntime executes it. The loader expands each softmax into ops that bound
propagation handles (verifier/graph/composite.py):
    softmax(x)_i = 1 / sum_j exp(x_j - x_i)
so this rule only evaluates it and bounds its float32 error on the graph as executed.

onnxruntime subtracts the row maximum M, then computes E_j = exp(x_j - M), S = sum_j E_j and
y_i = E_i * (1 / S). With input errors e, the exact softmax moves by at most
sum_j |dy_i / dx_j| e_max <= 2 y_i (1 - y_i) e_max <= min(1/2, 2 y_i) e_max (y_i at its
upper bound over the widened box). Rounding: x_j - M is off by at most u D (D bounds |x_j - M|),
so each E_j carries a relative error rho <= (1 + EXP) e^(u D) - 1, the sum a relative error
rho + gamma_n, and the reciprocal and the product one u each: y_i's relative error stays below
2 rho + gamma_n + 3 u, taken 1.25 times for second-order terms.
"""
from __future__ import annotations

import math

import torch

from verifier.float32 import UNIT_ROUNDOFF, gamma
from verifier.ops.base import Rule
from verifier.ops.exp_log import _EXP_ERROR


class Softmax(Rule):
    """attrs: axis (per-sample axis, the last one after the loader's rewrite)."""

    nonlinear = True
    uses_input_bounds = True

    def forward(self, node, x):
        return torch.softmax(x, dim=node.attrs["axis"] + 1)

    def ibp(self, node, bounds):
        """y_i >= 1 / (1 + sum_{j != i} exp(u_j - l_i)), y_i <= 1 / (1 + sum_{j != i} exp(l_j - u_i))."""
        l, u = bounds
        dim = node.attrs["axis"] + 1
        pairs_hi = torch.exp(u.unsqueeze(dim) - l.unsqueeze(dim + 1))  # [.., i, j] = exp(u_j - l_i)
        pairs_lo = torch.exp(l.unsqueeze(dim) - u.unsqueeze(dim + 1))
        n = l.shape[dim]
        eye = torch.eye(n, dtype=torch.bool, device=l.device).reshape(n, n, *([1] * (l.dim() - dim - 1)))
        others_hi = pairs_hi.masked_fill(eye, 0.0).sum(dim + 1)
        others_lo = pairs_lo.masked_fill(eye, 0.0).sum(dim + 1)
        return 1.0 / (1.0 + others_hi), 1.0 / (1.0 + others_lo)

    def backward(self, node, lam, state, alpha=None):
        raise NotImplementedError("softmax is expanded at load time")

    def float_error(self, node, errors, magnitudes, bounds):
        (e,), ((l, u),) = errors, bounds
        dim = node.attrs["axis"] + 1
        n = l.shape[dim]
        e_max = e.amax(dim, keepdim=True)
        _, top = self.ibp(node, (l - e, u + e))
        spread = (u + e).amax(dim, keepdim=True) - (l - e)  # >= |x_j - M| for every j
        rho = (1 + _EXP_ERROR) * torch.exp(UNIT_ROUNDOFF * spread.amax(dim, keepdim=True)) - 1
        relative = 1.25 * (2 * rho + gamma(n) + 3 * UNIT_ROUNDOFF)
        moved = torch.minimum(torch.full_like(top, 0.5), 2 * top) * e_max
        error = moved + relative * top
        return torch.where(torch.isfinite(spread).all(dim, keepdim=True), error, math.inf)
