"""Reciprocal, Sqrt and Pow with a constant exponent: evaluation, bounds (see
verifier/ops/smooth.py) and float32 error.

onnxruntime's Sqrt and Reciprocal are correctly rounded (worst relative error 1.00 u on 8
million points, u = 2^-24), and its Pow is within 1 u for exponents 2, 4, 0.5, 1.5, 2.5, -1, -2
and 2 u for 3 (x * x * x). The rules take 4 u, and (8 + 2 |p|) u for Pow.
"""
from __future__ import annotations

import torch

from verifier.float32 import UNIT_ROUNDOFF
from verifier.ops.smooth import Smooth

INF = float("inf")
_CORRECTLY_ROUNDED = 4 * UNIT_ROUNDOFF
_FLOAT32_MAX = 3.4028234663852886e38


def _off_zero(l, u):
    return (l > 0) | (u < 0)


def _distance_from_zero(l, u):
    """min |x| over [l, u] where it lies on one side of 0, else 0."""
    return torch.where(l > 0, l, torch.where(u < 0, -u, torch.zeros_like(l)))


def _increasing_on_domain(f, inside, l, u):
    """[f(l), f(u)] for an increasing f where [l, u] lies in its domain (infinite ends
    included), else (-inf, inf)."""
    return (torch.where(inside, f(l), -INF),
            torch.where(inside, f(u), INF))


def _overflow_to_inf(error, value):
    """float32 results beyond its range are infinite in onnxruntime."""
    return torch.where(value < _FLOAT32_MAX, error, INF)


class Reciprocal(Smooth):
    optimisable = False  # tangent points moved by alpha-CROWN gained 1-1.5% (README)

    def fn(self, node, x):
        return 1.0 / x

    def derivative(self, node, x):
        return -1.0 / (x * x)

    def stationary(self, node, a, l, u):
        root = torch.sqrt(-1.0 / a)  # NaN where a > 0
        return [root, -root]

    def in_domain(self, node, l, u):
        return _off_zero(l, u)

    def curvature(self, node, l, u, f_min, f_max):
        return l > 0, u < 0

    def wild_bounds(self, node, l, u):
        """[1/u, 1/l] on an infinite interval on one side of 0 (1 / inf = 0)."""
        one_side = _off_zero(l, u)
        return (torch.where(one_side, 1.0 / u, -INF),
                torch.where(one_side, 1.0 / l, INF))

    def float_error(self, node, errors, magnitudes, bounds):
        """|1/x' - 1/x| <= e / d^2 where both lie at least d from 0."""
        (e,), ((l, u),) = errors, bounds
        d = _distance_from_zero(l - e, u + e)
        error = e / (d * d) + _CORRECTLY_ROUNDED / d
        return _overflow_to_inf(torch.where(d > 0, error, INF), 1.0 / d)


class Sqrt(Smooth):
    optimisable = False  # tangent points moved by alpha-CROWN gained 0.3% (README)

    def fn(self, node, x):
        return torch.sqrt(x)

    def derivative(self, node, x):
        return 0.5 / torch.sqrt(x.clamp(min=torch.finfo(x.dtype).tiny))

    def stationary(self, node, a, l, u):
        return [0.25 / (a * a)]

    def in_domain(self, node, l, u):
        return l >= 0

    def curvature(self, node, l, u, f_min, f_max):
        return torch.zeros_like(l, dtype=torch.bool), torch.ones_like(l, dtype=torch.bool)

    def wild_bounds(self, node, l, u):
        return _increasing_on_domain(torch.sqrt, self.in_domain(node, l, u), l, u)

    def float_error(self, node, errors, magnitudes, bounds):
        """|sqrt x' - sqrt x| <= min(sqrt e, e / (2 sqrt(l - e))); negative inputs give NaN."""
        (e,), ((l, u),) = errors, bounds
        low = l - e
        moved = torch.fmin(torch.sqrt(e), e / (2 * torch.sqrt(low.clamp(min=0))))  # fmin: 0/0
        error = moved + _CORRECTLY_ROUNDED * torch.sqrt(u + e)
        return torch.where(low >= 0, error, INF)


class Pow(Smooth):
    """x ** p for a constant p (attrs['exponent'], never 0 or 1: the loader folds those)."""

    @staticmethod
    def _p(node) -> float:
        return float(node.attrs["exponent"])

    def _integer(self, node) -> bool:
        return self._p(node).is_integer()

    def fn(self, node, x):
        return torch.pow(x, self._p(node))

    def derivative(self, node, x):
        p = self._p(node)
        return p * torch.pow(x, p - 1)

    def stationary(self, node, a, l, u):
        p = self._p(node)
        root = torch.pow((a / p).abs().clamp(min=torch.finfo(a.dtype).tiny), 1.0 / (p - 1))
        return [root, -root]

    def in_domain(self, node, l, u):
        p = self._p(node)
        if self._integer(node):
            return torch.ones_like(l, dtype=torch.bool) if p > 0 else _off_zero(l, u)
        return l >= 0 if p > 0 else l > 0

    def curvature(self, node, l, u, f_min, f_max):
        """f'' = p (p - 1) x^(p - 2): odd integer powers change curvature at 0."""
        p = self._p(node)
        everywhere = torch.ones_like(l, dtype=torch.bool)
        if self._integer(node) and int(p) % 2 == 1:
            return l >= 0, u <= 0
        if p * (p - 1) > 0:
            return everywhere, ~everywhere
        return ~everywhere, everywhere

    def derivative_range(self, node, l, u):
        """Odd integer powers across 0 (the only intervals where f is neither): f' >= 0."""
        p = self._p(node)
        return torch.zeros_like(l), p * torch.pow(torch.maximum(l.abs(), u.abs()), p - 1)

    def wild_bounds(self, node, l, u):
        p = self._p(node)
        low = 0.0 if self._integer(node) and p > 0 and int(p) % 2 == 0 else -INF
        return torch.full_like(l, low), torch.full_like(l, INF)

    def float_error(self, node, errors, magnitudes, bounds):
        p = self._p(node)
        (e,), (size,), ((l, u),) = errors, magnitudes, bounds
        approximation = (8 + 2 * abs(p)) * UNIT_ROUNDOFF
        if p >= 1:  # |x'^p - x^p| <= p M^(p-1) e, M >= |x|, |x'|
            value = torch.pow(size, p)
            error = p * torch.pow(size, p - 1) * e + approximation * value
            if not self._integer(node):
                error = torch.where(l - e >= 0, error, INF)  # pow of a negative float: NaN
            return _overflow_to_inf(error, value)
        if p > 0:  # Hoelder: |x'^p - x^p| <= |x' - x|^p
            low = l - e
            moved = torch.fmin(torch.pow(e, p), p * torch.pow(low.clamp(min=0), p - 1) * e)
            return torch.where(low >= 0, moved + approximation * torch.pow(u + e, p), INF)
        d = _distance_from_zero(l - e, u + e) if self._integer(node) else (l - e).clamp(min=0)
        value = torch.pow(d, p)
        error = abs(p) * torch.pow(d, p - 1) * e + approximation * value
        return _overflow_to_inf(torch.where(d > 0, error, INF), value)
