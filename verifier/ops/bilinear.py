"""Products of two variable tensors: elementwise x * y (broadcast) and the matrix product X @ Y
(attention's Q K^T and A V).

Each product term x y over the box [lx, ux] x [ly, uy] is relaxed by McCormick planes:
    x y >= ly x + lx y - lx ly,   x y >= uy x + ux y - ux uy       (lower)
    x y <= uy x + lx y - lx uy,   x y <= ly x + ux y - ux ly       (upper)
and any convex mix of the two planes of a side is valid too: the mix weights (alpha for the
lower side, beta for the upper one, each in [0, 1], one pair per output element and bound row)
are what alpha-CROWN optimises. CROWN uses the even mix, whose two planes share the slopes
(the midpoints of y and x) and differ only in their intercepts. A product with an infinite
input bound gets constant planes at its interval bounds.

float32 error (both inputs carrying errors ex, ey, magnitudes mx, my >= |exact| + error):
|x'y' - xy| <= mx ey + my ex, plus the rounding, u mx my for one product and gamma_k mX @ mY
for a dot product of length k (any order, FMA or not).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from verifier.float32 import UNIT_ROUNDOFF, gamma
from verifier.ops.base import Rule, lam_to_input_shape, sum_to_shape
from verifier.ops.smooth import rounding, weighted_sum

_EVEN = 0.5  # CROWN's mix of the two planes of each side


def _corner_range(lx, ux, ly, uy):
    """Bounds of x y over the box, elementwise; 0 * inf counts as 0 (x is exactly 0 there)."""
    corners = torch.stack([lx * ly, lx * uy, ux * ly, ux * uy]).nan_to_num(nan=0.0, posinf=float("inf"),
                                                                              neginf=float("-inf"))
    return corners.amin(0), corners.amax(0)


def _unbounded(*bounds):
    return ~torch.stack(torch.broadcast_tensors(*(torch.isfinite(b) for b in bounds))).all(0)


class Mul(Rule):
    """x * y, elementwise with broadcasting (inputs of the same rank)."""

    nonlinear = True
    optimisable = True
    branchable = True

    def forward(self, node, x, y):
        return x * y

    def ibp(self, node, bx, by):
        return _corner_range(*bx, *by)

    def relax(self, node, lx, ux, ly, uy):
        return self._planes(lx, ux, ly, uy, _EVEN, _EVEN)

    def initial_alpha(self, node, state, m: int):
        l = state.bounds[node.inputs[0]][0]
        return l.new_full((l.shape[0], m, *node.shape, 2), _EVEN)

    @torch.no_grad()
    def branch_gains(self, node, weights, state):
        """The even mix's planes are off by at most wx wy / 2 on each side (at two corners of
        the box, wx and wy the widths); halving either input's interval halves that."""
        (lx, ux), (ly, uy) = (state.bounds[name] for name in node.inputs)
        gain = (weights[0] + weights[1]) * (ux - lx) * (uy - ly) / 4
        return [(sum_to_shape(gain, lx.shape), (lx + ux) / 2), (sum_to_shape(gain, ly.shape), (ly + uy) / 2)]

    def _planes(self, lx, ux, ly, uy, alpha, beta):
        """(lower: ax, ay, c; upper: ax, ay, c), each of the output's shape (or broadcast)."""
        lo_ax, lo_ay = alpha * ly + (1 - alpha) * uy, alpha * lx + (1 - alpha) * ux
        lo_c = -(alpha * lx * ly + (1 - alpha) * ux * uy)
        up_ax, up_ay = beta * uy + (1 - beta) * ly, beta * lx + (1 - beta) * ux
        up_c = -(beta * lx * uy + (1 - beta) * ux * ly)
        size = torch.maximum(lx.abs(), ux.abs()) * torch.maximum(ly.abs(), uy.abs())
        margin = rounding(lx.dtype) * size + torch.finfo(lx.dtype).tiny
        planes = [lo_ax, lo_ay, lo_c - margin, up_ax, up_ay, up_c + margin]
        unbounded = _unbounded(lx, ux, ly, uy)
        if unbounded.any():
            low, high = _corner_range(lx, ux, ly, uy)
            planes = [torch.where(unbounded, 0.0, t) for t in planes]
            planes[2] = torch.where(unbounded, low, planes[2])
            planes[5] = torch.where(unbounded, high, planes[5])
        return planes

    def backward(self, node, lam, state, alpha=None):
        x, y = node.inputs
        if alpha is None:
            planes = [t.unsqueeze(1) for t in state.relaxation(node)]
        else:
            lx, ux, ly, uy = (t.unsqueeze(1) for name in (x, y) for t in state.bounds[name])
            planes = self._planes(lx, ux, ly, uy, alpha[..., 0], alpha[..., 1])
        lo_ax, lo_ay, lo_c, up_ax, up_ay, up_c = planes
        positive, negative = lam.clamp(min=0), lam.clamp(max=0)
        lam_x = positive * lo_ax + negative * up_ax
        lam_y = positive * lo_ay + negative * up_ay
        bias = weighted_sum(positive, lo_c) + weighted_sum(negative, up_c)
        return [lam_to_input_shape(lam_x, state.shape_of(x)), lam_to_input_shape(lam_y, state.shape_of(y))], bias

    def forward_linear(self, node, fns, state):
        """The planes read each input's lower or upper function by the sign of its slope."""
        lo_ax, lo_ay, lo_c, up_ax, up_ay, up_c = state.relaxation(node)
        (xa_lo, xb_lo, xa_up, xb_up), (ya_lo, yb_lo, ya_up, yb_up) = fns

        def side(ax, ay, c, x_low, x_high, y_low, y_high, x_const, y_const):
            pick = lambda a, low, high: a.clamp(min=0) * low + a.clamp(max=0) * high  # noqa: E731
            coefficients = pick(ax.unsqueeze(1), x_low, x_high) + pick(ay.unsqueeze(1), y_low, y_high)
            return coefficients, pick(ax, *x_const) + pick(ay, *y_const) + c

        lower = side(lo_ax, lo_ay, lo_c, xa_lo, xa_up, ya_lo, ya_up, (xb_lo, xb_up), (yb_lo, yb_up))
        upper = side(up_ax, up_ay, up_c, xa_up, xa_lo, ya_up, ya_lo, (xb_up, xb_lo), (yb_up, yb_lo))
        return (*lower, *upper)

    def float_error(self, node, errors, magnitudes):
        (ex, ey), (mx, my) = errors, magnitudes
        return mx * ey + my * ex + UNIT_ROUNDOFF * mx * my


# Above this many elements the interval bounds of X @ Y come from midpoint and radius (up to
# 1.5 times wider) instead of the exact corner products of every term.
_EXACT_TERMS = 2 ** 24


class MatMulVariables(Rule):
    """X @ Y over the last two axes, leading axes broadcast (inputs of the same rank >= 2)."""

    nonlinear = True
    optimisable = True
    branchable = True

    def forward(self, node, x, y):
        return x @ y

    def ibp(self, node, bx, by):
        (lx, ux), (ly, uy) = bx, by
        terms = math.prod(np.broadcast_shapes(lx.unsqueeze(-1).shape, ly.unsqueeze(-3).shape))
        if _unbounded(lx, ux).any() or _unbounded(ly, uy).any() or terms > _EXACT_TERMS:
            return self._midpoint_radius(lx, ux, ly, uy)
        low, high = _corner_range(lx.unsqueeze(-1), ux.unsqueeze(-1), ly.unsqueeze(-3), uy.unsqueeze(-3))
        return low.sum(-2), high.sum(-2)

    @staticmethod
    def _midpoint_radius(lx, ux, ly, uy):
        if _unbounded(lx, ux).any() or _unbounded(ly, uy).any():
            shape = np.broadcast_shapes(lx.shape[:-2], ly.shape[:-2]) + (lx.shape[-2], ly.shape[-1])
            return lx.new_full(shape, float("-inf")), lx.new_full(shape, float("inf"))
        cx, rx, cy, ry = (ux + lx) / 2, (ux - lx) / 2, (uy + ly) / 2, (uy - ly) / 2
        centre = cx @ cy
        radius = cx.abs() @ ry + rx @ cy.abs() + rx @ ry
        return centre - radius, centre + radius

    def relax(self, node, lx, ux, ly, uy):
        return lx, ux, ly, uy

    def initial_alpha(self, node, state, m: int):
        l = state.bounds[node.inputs[0]][0]
        return l.new_full((l.shape[0], m, *node.shape, 2), _EVEN)

    @torch.no_grad()
    def branch_gains(self, node, weights, state):
        """As for Mul, term by term: output (i, k) holds the terms X[i, j] Y[j, k], each off by
        at most wX[i, j] wY[j, k] / 2 on each side; halving X[i, j] halves its terms' gaps."""
        (lx, ux), (ly, uy) = (state.bounds[name] for name in node.inputs)
        weight, wx, wy = weights[0] + weights[1], ux - lx, uy - ly
        gain_x = wx * (weight @ wy.transpose(-1, -2)) / 4
        gain_y = wy * (wx.transpose(-1, -2) @ weight) / 4
        return [(sum_to_shape(gain_x, lx.shape), (lx + ux) / 2), (sum_to_shape(gain_y, ly.shape), (ly + uy) / 2)]

    def backward(self, node, lam, state, alpha=None):
        """With mix weights a (lower) and b (upper) per output (i, j), summed over k:
        lam_x = (l+ a + l- (1 - b)) @ ly^T + (l+ (1 - a) + l- b) @ uy^T,
        lam_y = lx^T @ (l+ a + l- b) + ux^T @ (l+ (1 - a) + l- (1 - b)), for l+- = lam's parts."""
        x, y = node.inputs
        lx, ux, ly, uy = (t.unsqueeze(1) for name in (x, y) for t in state.bounds[name])
        if _unbounded(lx, ux).any() or _unbounded(ly, uy).any():
            return self._constant_backward(node, lam, state)
        positive, negative = lam.clamp(min=0), lam.clamp(max=0)
        if alpha is None and _EVEN == 0.5:  # the even mix: both sides' slopes are the midpoints
            lam_x = lam @ ((ly + uy) / 2).transpose(-1, -2)
            lam_y = ((lx + ux) / 2).transpose(-1, -2) @ lam
            bias = -(weighted_sum(positive, lx @ ly + ux @ uy) + weighted_sum(negative, lx @ uy + ux @ ly)) / 2
            return [lam_to_input_shape(lam_x, state.shape_of(x)), lam_to_input_shape(lam_y, state.shape_of(y))], bias
        a, b = (_EVEN, _EVEN) if alpha is None else (alpha[..., 0], alpha[..., 1])
        with_ly, with_uy = positive * a + negative * (1 - b), positive * (1 - a) + negative * b
        with_lx, with_ux = positive * a + negative * b, positive * (1 - a) + negative * (1 - b)
        lam_x = with_ly @ ly.transpose(-1, -2) + with_uy @ uy.transpose(-1, -2)
        lam_y = lx.transpose(-1, -2) @ with_lx + ux.transpose(-1, -2) @ with_ux
        products = [(positive * a, lx @ ly), (positive * (1 - a), ux @ uy),
                    (negative * b, lx @ uy), (negative * (1 - b), ux @ ly)]
        bias = -sum(weighted_sum(weight, product) for weight, product in products)
        return [lam_to_input_shape(lam_x, state.shape_of(x)), lam_to_input_shape(lam_y, state.shape_of(y))], bias

    def _constant_backward(self, node, lam, state):
        low, high = (t.unsqueeze(1) for t in self.ibp(node, *(state.bounds[name] for name in node.inputs)))
        bias = weighted_sum(lam.clamp(min=0), low) + weighted_sum(lam.clamp(max=0), high)
        return [None, None], bias

    def forward_linear(self, node, fns, state):
        """The even mix: lower and upper planes share the slopes (the midpoints of Y and X)."""
        (xa_lo, xb_lo, xa_up, xb_up), (ya_lo, yb_lo, ya_up, yb_up) = fns
        lx, ux, ly, uy = (t for name in node.inputs for t in state.bounds[name])
        if _unbounded(lx, ux).any() or _unbounded(ly, uy).any():
            low, high = self.ibp(node, (lx, ux), (ly, uy))
            zero = xa_lo.new_zeros(xa_lo.shape[:2] + low.shape[1:])
            return zero, low, zero, high
        slope_x, slope_y = (ly + uy) / 2, (lx + ux) / 2  # x's coefficients are y's midpoints

        def side(x_low, x_high, y_low, y_high, sx, sy):
            return (x_low @ sx.clamp(min=0) + x_high @ sx.clamp(max=0)
                    + sy.clamp(min=0) @ y_low + sy.clamp(max=0) @ y_high)

        rows_x, rows_y = slope_x.unsqueeze(1), slope_y.unsqueeze(1)
        return (side(xa_lo, xa_up, ya_lo, ya_up, rows_x, rows_y),
                side(xb_lo, xb_up, yb_lo, yb_up, slope_x, slope_y) - (lx @ ly + ux @ uy) / 2,
                side(xa_up, xa_lo, ya_up, ya_lo, rows_x, rows_y),
                side(xb_up, xb_lo, yb_up, yb_lo, slope_x, slope_y) - (lx @ uy + ux @ ly) / 2)

    def float_error(self, node, errors, magnitudes):
        (ex, ey), (mx, my) = errors, magnitudes
        k = mx.shape[-1]
        return ex @ my + mx @ ey + gamma(k) * (mx @ my)
