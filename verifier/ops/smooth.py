"""Smooth elementwise functions of one input (exp, log, reciprocal, sqrt, pow, sin, cos): the
relaxation machinery they share. Each function's own module gives its value, derivative,
domain, curvature and the points where its derivative takes a given value.

A line a x + b is found in two steps: a slope, then the intercept that makes it valid, computed
exactly: the extremes of g(x) = f(x) - a x over [l, u] lie at the ends or where f'(x) = a
(`stationary`), so min g and max g over those few points give the lower and upper intercepts.
Any slope therefore gives a sound line, whether it came from a chord, a tangent or an optimiser;
the same extremes with a = 0 are the exact interval bounds (IBP).

Slopes: where f is convex on [l, u] the chord is the tightest upper line and the lower line is
a tangent, at l + alpha (u - l) (the midpoint by default; alpha-CROWN moves it); mirrored where
f is concave. Where f is neither (sin and cos across an inflection point, odd powers across 0)
both slopes are taken in the range of f' on [l, u], the chord's by default.

Intervals outside the domain (log of a non-positive number, 1/x across 0), infinite bounds and
overflowing values get constant lines at the interval bounds (which may be infinite).
"""
from __future__ import annotations

import numpy as np
import torch

from verifier.ops.base import Rule
from verifier.ops.branching import ElementwiseBranching

# Intercepts and interval bounds are widened by this many units of the precision's rounding,
# relative to the magnitudes involved (values of f, a x), for the rounding of f and of a x.
_ROUNDING_UNITS = 64
# Below this relative width the chord slope is all cancellation: use the derivative instead.
_NARROW = 1e-9


def rounding(dtype: torch.dtype) -> float:
    return _ROUNDING_UNITS * torch.finfo(dtype).eps


def weighted_sum(lam: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum over the per-sample dims of lam * b: (B, m), where 0 * inf counts as 0 (a constant
    infinite line that no row reads)."""
    product = lam * b
    if not torch.isfinite(b).all():
        product = torch.where(lam == 0, 0.0, product)
    return product.reshape(*product.shape[:2], -1).sum(-1)  # a scalar node's lam is (B, m)


def line_image(a_lo, b_lo, a_up, b_up, fns):
    """Forward mode: lower and upper linear functions of f(x) from those of x (B, n, *shape)
    and the lines of f (B, *shape), slopes of either sign."""
    in_a_lo, in_b_lo, in_a_up, in_b_up = fns

    def pick(a, low, high):
        return a.clamp(min=0) * low + a.clamp(max=0) * high

    lo_a, up_a = a_lo.unsqueeze(1), a_up.unsqueeze(1)
    return (pick(lo_a, in_a_lo, in_a_up), pick(a_lo, in_b_lo, in_b_up) + b_lo,
            pick(up_a, in_a_up, in_a_lo), pick(a_up, in_b_up, in_b_lo) + b_up)


class Smooth(ElementwiseBranching, Rule):
    nonlinear = True
    optimisable = True
    uses_input_bounds = True
    value_range = (float("-inf"), float("inf"))  # f's range over its whole domain
    safe_point = 1.0  # a point of the domain, standing in for intervals outside it

    # --- what each function gives --------------------------------------------------------------

    def fn(self, node, x):
        raise NotImplementedError

    def derivative(self, node, x):
        raise NotImplementedError

    def stationary(self, node, a, l, u) -> list[torch.Tensor]:
        """Points that include every x in [l, u] where f'(x) = a (others, NaN or outside [l, u]
        are harmless)."""
        raise NotImplementedError

    def in_domain(self, node, l, u):
        return torch.ones_like(l, dtype=torch.bool)

    def curvature(self, node, l, u, f_min, f_max):
        """(convex, concave) masks on [l, u], given f's bounds there."""
        raise NotImplementedError

    def derivative_range(self, node, l, u):
        """Bounds of f' on [l, u]; needed only where f is neither convex nor concave."""
        raise NotImplementedError

    def wild_bounds(self, node, l, u):
        """Bounds of f where the interval is infinite or leaves the domain."""
        low, high = self.value_range
        return torch.full_like(l, low), torch.full_like(l, high)

    # --- the shared rules ----------------------------------------------------------------------

    def forward(self, node, x):
        return self.fn(node, x)

    def ibp(self, node, bounds):
        l, u = bounds
        ls, us, wild = self._tame(node, l, u)
        f_min, f_max = self._extremes(node, ls, us, torch.zeros_like(ls))
        return self._with_wild(node, l, u, wild, f_min, f_max)

    def relax(self, node, l, u):
        return self._lines(node, l, u, None)

    def initial_alpha(self, node, state, m: int):
        l, u = state.bounds[node.inputs[0]]
        ls, us, _ = self._tame(node, l, u)
        neither = self._shape_masks(node, ls, us)[2]
        alpha = self._default_alpha(node, ls, us, self._chord(node, ls, us), neither)
        return alpha.unsqueeze(1).expand(alpha.shape[0], m, *alpha.shape[1:]).clone()

    def backward(self, node, lam, state, alpha=None):
        if alpha is None:
            a_lo, b_lo, a_up, b_up = (t.unsqueeze(1) for t in state.relaxation(node))
        else:
            l, u = state.bounds[node.inputs[0]]
            a_lo, b_lo, a_up, b_up = self._lines(node, l.unsqueeze(1), u.unsqueeze(1), alpha)
        positive, negative = lam.clamp(min=0), lam.clamp(max=0)
        lam_in = positive * a_lo + negative * a_up
        return [lam_in], weighted_sum(positive, b_lo) + weighted_sum(negative, b_up)

    def forward_linear(self, node, fns, state):
        return line_image(*state.relaxation(node), fns[0])

    # --- the machinery -------------------------------------------------------------------------

    def _tame(self, node, l, u):
        """Finite intervals inside the domain; `wild` marks the ones replaced by a safe point."""
        wild = ~(torch.isfinite(l) & torch.isfinite(u) & self.in_domain(node, l, u))
        if wild.any():
            l, u = (torch.where(wild, self.safe_point, t) for t in (l, u))
        return l, u, wild

    def _with_wild(self, node, l, u, wild, low, high):
        if wild.any():
            wild_low, wild_high = self.wild_bounds(node, l, u)
            low, high = torch.where(wild, wild_low, low), torch.where(wild, wild_high, high)
        return low, high

    def _extremes(self, node, l, u, a):
        """Lower and upper bounds of min and max of f(x) - a x over [l, u], exact up to a
        rounding margin. a may have more leading dims than l and u (rows)."""
        shape = np.broadcast_shapes(l.shape, a.shape)  # numpy's: torch's imports sympy
        points = [l.expand(shape), u.expand(shape)]
        for c in self.stationary(node, a, l, u):
            points.append(torch.where((c >= l) & (c <= u), c, l).expand(shape))  # NaN: l
        x = torch.stack(points)
        fx = self.fn(node, x)
        ax = a * x
        g = fx - ax
        margin = rounding(l.dtype) * (fx.abs() + ax.abs()) + torch.finfo(l.dtype).tiny
        infinite = torch.isinf(g)  # an overflowing value: no margin (inf - inf is NaN)
        return (torch.where(infinite, g, g - margin).amin(0),
                torch.where(infinite, g, g + margin).amax(0))

    def _chord(self, node, l, u):
        width, mid = u - l, (l + u) / 2
        narrow = width <= _NARROW * (1 + mid.abs())
        slope = (self.fn(node, u) - self.fn(node, l)) / torch.where(narrow, 1.0, width)
        return torch.where(narrow, self.derivative(node, mid), slope)

    def _shape_masks(self, node, l, u):
        f_min, f_max = self._extremes(node, l, u, torch.zeros_like(l))
        convex, concave = self.curvature(node, l, u, f_min, f_max)
        return convex, concave, ~(convex | concave), f_min, f_max

    def _default_alpha(self, node, l, u, chord, neither):
        """(..., 2): tangent points at the midpoint; the chord's slope where f is neither
        convex nor concave."""
        alpha = torch.full_like(l, 0.5)
        if neither.any():
            d_min, d_max = self.derivative_range(node, l, u)
            share = ((chord - d_min) / (d_max - d_min).clamp(min=torch.finfo(l.dtype).tiny)).clamp(0, 1)
            alpha = torch.where(neither, share, alpha)
        return torch.stack([alpha, alpha], -1)

    def _lines(self, node, l, u, alpha):
        """(a_lo, b_lo, a_up, b_up); with alpha (..., 2) the rows' own lines."""
        ls, us, wild = self._tame(node, l, u)
        chord = self._chord(node, ls, us)
        convex, concave, neither, f_min, f_max = self._shape_masks(node, ls, us)
        if alpha is None:
            alpha = self._default_alpha(node, ls, us, chord, neither)
        a_lo = self._slope(node, ls, us, alpha[..., 0], neither)
        a_up = self._slope(node, ls, us, alpha[..., 1], neither)
        a_lo = torch.where(concave, chord, a_lo)
        a_up = torch.where(convex, chord, a_up)
        b_lo, _ = self._extremes(node, ls, us, a_lo)
        _, b_up = self._extremes(node, ls, us, a_up)
        low, high = self._with_wild(node, l, u, wild, f_min, f_max)
        return (*_constant_where_bad(a_lo, b_lo, low, wild), *_constant_where_bad(a_up, b_up, high, wild))

    def _slope(self, node, l, u, alpha, neither):
        """The tangent slope at l + alpha (u - l); where f is neither convex nor concave, the
        slope alpha of the way across the range of f'."""
        slope = self.derivative(node, l + alpha * (u - l))
        if neither.any():
            d_min, d_max = self.derivative_range(node, l, u)
            slope = torch.where(neither, d_min + alpha * (d_max - d_min), slope)
        return slope


def _constant_where_bad(a, b, bound, wild):
    """The constant line at `bound` where a line is not finite (overflow) or its interval wild."""
    bad = ~(torch.isfinite(a) & torch.isfinite(b)) | wild
    if not bad.any():
        return a, b
    return torch.where(bad, 0.0, a), torch.where(bad, bound.expand_as(b), b)
