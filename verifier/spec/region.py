"""The normalised form of a VNN-LIB property."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Disjunct:
    """One conjunction of output constraints: the unsafe set {y : C y <= d}."""

    C: np.ndarray  # (rows, n_outputs) float64
    d: np.ndarray  # (rows,) float64


@dataclass
class Region:
    """An input box and the unsafe output set, a union of Disjuncts.

    The property is violated (sat) iff some x in [lo, hi] has f(x) in some disjunct.
    """

    lo: np.ndarray  # (n_inputs,) float64, flattened C-order of the ONNX input
    hi: np.ndarray
    disjuncts: list[Disjunct] = field(default_factory=list)

    @property
    def n_inputs(self) -> int:
        return int(self.lo.size)

    @property
    def n_outputs(self) -> int:
        return int(self.disjuncts[0].C.shape[1]) if self.disjuncts else 0
