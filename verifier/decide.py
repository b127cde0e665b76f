"""The two decisions that must be trusted; every other stage only proposes.

- `confirm_counterexample`: sat only for a float32 input inside the box (no tolerance) whose
  output, as onnxruntime computes it, violates the property (no tolerance). That is a
  counterexample of the network as deployed and as VNN-COMP checks it, whatever the exact
  network does there; the float64 value is not required to agree (a network whose float32
  execution fails where the real-valued one holds is still violated).
- `refuted_disjuncts`: unsat only from lower bounds computed in float64, each beating its
  threshold d by eps (per row, verifier.float_error): eps covers the float32 execution's
  distance from the exact network over the whole box, and the float64 rounding of the bound
  computation. So unsat holds for the real-valued network and for the float32 one, and no
  point that violates in onnxruntime can coexist with it.
"""
from __future__ import annotations

import numpy as np
import torch

from verifier.result import Witness
from verifier.spec.region import Region


def into_box_float32(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """x as float32, nudged to lie inside [lo, hi] exactly; None when no float32 fits.

    One exception: a dimension fixed to a single value (lo == hi) that float32 cannot
    represent gets the nearest float32, the input the model itself receives for that value
    (VNN-COMP's collins_rul_cnn fixes most pixels that way). A box of positive width must
    hold the float32 point with no tolerance.
    """
    x32 = np.clip(np.asarray(x, dtype=np.float64), lo, hi).astype(np.float32)
    x32 = np.where(x32.astype(np.float64) < lo, np.nextafter(x32, np.float32(np.inf)), x32)
    x32 = np.where(x32.astype(np.float64) > hi, np.nextafter(x32, np.float32(-np.inf)), x32)
    inside = (x32.astype(np.float64) >= lo) & (x32.astype(np.float64) <= hi)
    fixed = lo == hi
    x32 = np.where(fixed, np.asarray(lo, dtype=np.float32), x32)
    return x32 if (inside | fixed).all() else None


def violates(region: Region, y: np.ndarray) -> bool:
    """Does output y lie in some disjunct's unsafe set C y <= d (no tolerance)?"""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    return any(bool(np.all(dj.C @ y <= dj.d)) for dj in region.disjuncts)


def confirm_counterexample(runner, region: Region, x: np.ndarray) -> Witness | None:
    x32 = into_box_float32(x, region.lo, region.hi)
    if x32 is None:
        return None
    y_ort = runner.run(x32)
    if not violates(region, y_ort):
        return None
    return Witness(x32, y_ort.astype(np.float32))


def refuted_disjuncts(lower: torch.Tensor, d: torch.Tensor, eps: torch.Tensor | None,
                      owner: torch.Tensor, n_disjuncts: int) -> torch.Tensor:
    """(B, K) bool: disjunct k is impossible in box b (some row's lower bound of C y beats
    d + eps).

    `lower` (B, m) must hold float64 lower bounds of the stacked rows C y of the exact
    network; eps (m,) the rows' float margins from verifier.float_error (required).
    """
    if lower.dtype != torch.float64:
        raise TypeError("unsat may only be decided from float64 bounds")
    if eps is None:
        raise TypeError("unsat needs the float32 execution margin of every row")
    threshold = d.to(torch.float64) + eps.to(torch.float64).abs()
    row_refuted = lower > threshold
    owner_t = owner.to(lower.device)
    hits = lower.new_zeros(lower.shape[0], n_disjuncts).index_add_(1, owner_t, row_refuted.double())
    return hits > 0
