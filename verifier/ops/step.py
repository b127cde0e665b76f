"""Step functions: Sign, Floor, and the truncation of a Cast to an integer type.

All three are nondecreasing and piecewise constant, so IBP applies them to both ends, and each
interval [l, u] gets two lines a x + b with slopes in [0, 1] (Sign: [0, 2 / |end|]) that hold
across the jumps:

- Floor: floor(x) in (x - 1, x]; lower line y = floor(l) or y = x - 1, upper y = floor(u) or
  y = x, whichever encloses less area on [l, u] (on an interval with no jump both are the
  constant). Truncation (Cast float -> int) is floor above 0 and ceil below: its lines are
  x - 1 (or x where u <= 0) and x + 1 (or x where l >= 0).
- Sign: -1, 0, 1. Across 0 the lower line pivots on (0, -1) with slope 0 or 2 / u, the upper
  on (0, 1) with slope 0 or 2 / |l| (the adaptive choice, as for ReLU); with an end at 0 the
  chord to the other end.

float_error: the input as float32 may differ from the exact input by e; where [l - e, u + e]
holds a jump, the output may take the value across it (a flip of the step), so the error is
the largest jump that window can cross, and 0 elsewhere (the function itself is exact).

Gradients for falsification: a step has zero derivative almost everywhere, so evaluation
passes a surrogate gradient (Bengio et al.'s straight-through estimator: the identity for Floor
and truncation; for Sign a smoothed step, see _smoothed_sign_slope); values are exact.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from verifier.ops.activation import Activation
from verifier.ops.branching import ElementwiseBranching
from verifier.ops.exact import connected

_straight_through = [True]


@contextmanager
def no_straight_through():
    """Steps pass no gradient inside this block (their true derivative, zero): autograd then
    shows which inputs reach the output other than through a step."""
    _straight_through[0] = False
    try:
        yield
    finally:
        _straight_through[0] = True


class _StraightThrough(torch.autograd.Function):
    """fn(x) exactly, with the gradient of a surrogate (its derivative given as `slope`)."""

    @staticmethod
    def forward(ctx, x, fn, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return fn(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return grad * ctx.slope(x), None, None


def _identity_slope(x):
    return torch.ones_like(x)


class Step(ElementwiseBranching, Activation):
    uses_input_bounds = True
    surrogate_slope = staticmethod(_identity_slope)

    def forward(self, node, x):
        if not x.requires_grad:
            return self.fn(x)
        if not _straight_through[0]:
            return connected(self.fn(x), x)
        return _StraightThrough.apply(x, self.fn, self.surrogate_slope)

    def float_error(self, node, errors, magnitudes, bounds):
        (e,), ((l, u),) = errors, bounds
        flips = self.jump_within(l - e, u + e) & (e > 0)  # an exact input gives the exact step
        return torch.where(flips, self.largest_jump(e), torch.zeros_like(e))

    def jump_within(self, l, u):
        """Does [l, u] hold a point where the function jumps?"""
        raise NotImplementedError

    def largest_jump(self, e):
        """The most the output can change between two inputs at most e apart."""
        raise NotImplementedError


class UnitStaircase(Step):
    """Floor and truncation: unit jumps at integers, lines of slope 0 or 1."""

    def jump_within(self, l, u):
        return torch.floor(u) >= torch.ceil(l)  # an integer in [l, u]

    def largest_jump(self, e):
        return torch.floor(2 * e) + 1  # the integers in a window of width 2e

    def intercepts(self, l, u):
        """(b_lo, b_up): x + b_lo <= f(x) <= x + b_up on [l, u]."""
        raise NotImplementedError

    def relax(self, node, l, u):
        f_l, f_u = self.fn(l), self.fn(u)
        b_lo, b_up = self.intercepts(l, u)
        mid = (l + u) / 2
        # slope 1 where the line beats the constant on average over [l, u]
        lo_slope = (mid + b_lo > f_l).to(l.dtype)
        up_slope = (mid + b_up < f_u).to(l.dtype)
        return (lo_slope, torch.where(lo_slope > 0, b_lo, f_l),
                up_slope, torch.where(up_slope > 0, b_up, f_u))


class Floor(UnitStaircase):
    fn = staticmethod(torch.floor)

    def intercepts(self, l, u):
        return torch.full_like(l, -1.0), torch.zeros_like(l)


class Truncate(UnitStaircase):
    """Cast from float to an integer type: rounds toward zero."""

    fn = staticmethod(torch.trunc)

    def intercepts(self, l, u):
        # floor(x) > x - 1 above 0, ceil(x) >= x below; ceil(x) < x + 1 below 0, floor(x) <= x above
        return -(u > 0).to(l.dtype), (l < 0).to(l.dtype)


def _smoothed_sign_slope(x):
    """The derivative (up to scale) of sign smoothed by a Gaussian as wide as each input varies
    across the batch (the restarts of an attack spread over the box): neurons that flip inside
    the region pass the gradient, those far from 0 do not. larq's clipped identity (|x| <= 1)
    passes nothing where inputs are in the hundreds (a binarized network on raw pixels)."""
    if x.shape[0] < 2:
        return torch.ones_like(x)
    spread = x.std(0, keepdim=True).clamp(min=torch.finfo(x.dtype).tiny)
    return torch.exp(-(x / spread) ** 2)


class Sign(Step):
    fn = staticmethod(torch.sign)
    surrogate_slope = staticmethod(_smoothed_sign_slope)
    tightens_straddling_rows_only = True  # constant on intervals that do not hold 0
    special_point = 0.0  # the jump

    def jump_within(self, l, u):
        return (l <= 0) & (u >= 0)

    def largest_jump(self, e):
        return torch.full_like(e, 2.0)

    def relax(self, node, l, u):
        tiny = torch.finfo(l.dtype).tiny
        neg, pos = (-l).clamp(min=tiny), u.clamp(min=tiny)
        straddle = (l < 0) & (u > 0)
        # across 0: pivots (0, -1) and (0, 1), the slope that encloses less area
        lo_slope = torch.where(straddle & (u > -l), 2 / pos, 0.0)
        up_slope = torch.where(straddle & (-l > u), 2 / neg, 0.0)
        lo_bias = torch.where(straddle, -1.0, torch.sign(l))
        up_bias = torch.where(straddle, 1.0, torch.sign(u))
        # one end at 0: the chord to the other end, through (0, 0)
        from_zero, to_zero = (l == 0) & (u > 0), (l < 0) & (u == 0)
        lo_slope = torch.where(from_zero, 1 / pos, lo_slope)
        lo_bias = torch.where(from_zero, 0.0, lo_bias)
        up_slope = torch.where(to_zero, 1 / neg, up_slope)
        up_bias = torch.where(to_zero, 0.0, up_bias)
        return lo_slope, lo_bias, up_slope, up_bias
