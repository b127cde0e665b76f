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


def stack_rows(region: Region) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All disjuncts' rows in one system: C (m, n_out), d (m,), owner (m,) = disjunct index."""
    n_out = region.n_outputs
    C = np.concatenate([dj.C for dj in region.disjuncts]) if region.disjuncts else np.zeros((0, n_out))
    d = np.concatenate([dj.d for dj in region.disjuncts]) if region.disjuncts else np.zeros(0)
    owner = np.concatenate([np.full(len(dj.d), k) for k, dj in enumerate(region.disjuncts)]
                           ) if region.disjuncts else np.zeros(0, dtype=int)
    return C.astype(np.float64), d.astype(np.float64), owner.astype(np.int64)
