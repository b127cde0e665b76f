"""Sin and Cos on intervals of any width: evaluation, bounds (see verifier/ops/smooth.py) and
float32 error.

Both are sin(x + phase). The points where the derivative cos(x + phase) equals a slope a are
+-acos(a) - phase + 2 pi k; on [l, u] only the first and the last of each branch matter, as
f(x) - a x drops by 2 pi a from one period to the next. So four points and the ends give
exact intercepts for any slope and any width. Beyond |x| = 2^20 the bounds are [-1, 1].

onnxruntime's Sin and Cos (float32) are range-reduced properly: measured against float64 on
8 million points for each range up to |x| < 1e20, the absolute error stays below 1.73 u
(u = 2^-24). The rule takes 10 u.
"""
from __future__ import annotations

import math

import torch

from verifier.float32 import UNIT_ROUNDOFF
from verifier.ops.smooth import Smooth

_TRIG_ERROR = 10 * UNIT_ROUNDOFF
_LARGE = 2.0 ** 20
_TWO_PI = 2 * math.pi
# Moves a stationary point by at most sqrt(2 * _INSIDE) = 4.5e-8, which changes f(x) - a x
# there by at most _INSIDE (it is flat to first order): far below the intercepts' margin.
_INSIDE = 1e-15


def _first_and_last(base, l, u):
    """The first point of base + 2 pi k at or above l and the last at or below u."""
    return (base + _TWO_PI * torch.ceil((l - base) / _TWO_PI),
            base + _TWO_PI * torch.floor((u - base) / _TWO_PI))


class Sinusoid(Smooth):
    value_range = (-1.0, 1.0)

    def __init__(self, phase: float):
        self.phase = phase

    def fn(self, node, x):
        if self.phase == 0:
            return torch.sin(x)
        if self.phase == math.pi / 2:
            return torch.cos(x)
        return torch.sin(x + self.phase)

    def derivative(self, node, x):
        return torch.cos(x + self.phase)

    def stationary(self, node, a, l, u):
        # |a| > 1: no such point, and any point of [l, u] is a harmless candidate; clamped
        # just inside [-1, 1] so that acos has a finite gradient for alpha-CROWN
        theta = torch.acos(a.clamp(-1 + _INSIDE, 1 - _INSIDE))
        points = []
        for base in (theta - self.phase, -theta - self.phase):
            points += _first_and_last(base, l, u)
        return points

    def in_domain(self, node, l, u):
        return (l.abs() <= _LARGE) & (u.abs() <= _LARGE)

    def curvature(self, node, l, u, f_min, f_max):
        """f'' = -f."""
        return f_max <= 0, f_min >= 0

    def derivative_range(self, node, l, u):
        return Sinusoid(self.phase + math.pi / 2).ibp(node, (l, u))

    def float_error(self, node, errors, magnitudes, bounds=None):
        return errors[0] + _TRIG_ERROR  # 1-Lipschitz


class Sin(Sinusoid):
    def __init__(self):
        super().__init__(0.0)


class Cos(Sinusoid):
    def __init__(self):
        super().__init__(math.pi / 2)
