"""Rigorous float64 arithmetic: results paired with explicit bounds on their rounding error.

The checker never needs exact values, only valid bounds. Three facts carry everything:

- one correctly rounded operation (+, -, *, /) is within half an ulp of the exact result, so
  np.nextafter of it, away from the side we must not cross, is a bound (`down`, `up`);
- a float64 sum of n products, in any order, with or without FMA, is off by at most
  gamma_n = n u / (1 - n u) times the sum of the products' magnitudes (Higham, Thm 3.5),
  u = 2^-53, plus at most 2^-1074 per product lost to underflow (numpy keeps subnormals);
- a quantity computed only as an error bound (sums of non-negative terms) is inflated by a
  relative factor that covers its own rounding (`inflate`).
"""
from __future__ import annotations

import numpy as np

UNIT = 2.0 ** -53  # float64 unit roundoff
UNDERFLOW = 2.0 ** -1074  # absolute error of one product that underflows
FLOAT32_UNIT = 2.0 ** -24  # float32 unit roundoff (for the float32 execution error)
# Sizes far below this keep gamma_n and the inflation factor meaningful.
MAX_TERMS = 1 << 30


def gamma(n: int) -> float:
    """Higham's gamma_n for float64, rounded up generously (a factor 1 + 1e-9)."""
    if n >= MAX_TERMS:
        raise ValueError(f"a sum of {n} terms is beyond the checker's error analysis")
    return n * UNIT / (1.0 - n * UNIT) * (1.0 + 1e-9)


def gamma32(n: int) -> float:
    """gamma_n for float32 execution (onnxruntime), as verifier/float_error.py uses it."""
    return n * FLOAT32_UNIT / (1.0 - n * FLOAT32_UNIT)


def inflate(value: np.ndarray | float, terms: int = 1):
    """An upper bound of a non-negative quantity computed as a float64 sum of `terms` products:
    value (1 + 2 gamma) plus the underflow allowance; its own rounding is in the factor's slack."""
    return np.asarray(value) * (1.0 + 2.0 * gamma(terms + 2)) + (terms + 2) * UNDERFLOW


def down(x):
    """A value <= the exact result of the one correctly rounded operation that gave x."""
    return np.nextafter(x, -np.inf)


def up(x):
    """A value >= the exact result of the one correctly rounded operation that gave x."""
    return np.nextafter(x, np.inf)


def sub_down(a, b):
    """A lower bound of a - b (a, b floats)."""
    return down(np.subtract(a, b))


def add_up(a, b):
    """An upper bound of a + b (a, b floats)."""
    return up(np.add(a, b))


class LowerSum:
    """A running lower bound of a sum of signed float terms: the float sum of the terms, and an
    explicit error allowance (errors already known, plus the rounding of every addition)."""

    def __init__(self, shape):
        self.total = np.zeros(shape)
        self.magnitude = np.zeros(shape)  # sum of |term| (for the additions' rounding)
        self.error = np.zeros(shape)  # non-negative errors to subtract
        self.count = 0

    def add(self, value, error=0.0):
        """Add a term whose exact value is >= value - error."""
        self.total = self.total + value
        self.magnitude = self.magnitude + np.abs(value)
        self.error = self.error + error
        self.count += 1

    def lower(self) -> np.ndarray:
        rounding = gamma(self.count + 1) * self.magnitude
        return down(self.total - inflate(self.error + rounding, self.count + 1))
