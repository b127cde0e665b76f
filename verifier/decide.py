"""The two decisions that must be trusted; every other stage only proposes.

- `confirm_counterexample`: sat only for an input inside the box (as float32, no tolerance)
  whose output violates the property both in onnxruntime and in float64 evaluation.
- `refuted_disjuncts`: unsat only from lower bounds computed in float64, each beating its
  threshold by a margin that covers float64 rounding in the bound computation and the gap
  between real arithmetic and the float32 execution of the network.
"""
from __future__ import annotations

import numpy as np
import torch

from verifier.graph.evaluate import evaluate
from verifier.result import Witness
from verifier.spec.region import Region

RELATIVE_MARGIN = 1e-6


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


def confirm_counterexample(runner, graph64, region: Region, x: np.ndarray) -> Witness | None:
    x32 = into_box_float32(x, region.lo, region.hi)
    if x32 is None:
        return None
    y_ort = runner.run(x32)
    if not violates(region, y_ort):
        return None
    x64 = torch.as_tensor(x32.astype(np.float64), device=graph64.device).reshape(1, -1)
    y64 = evaluate(graph64, x64).reshape(-1).cpu().numpy()
    if not violates(region, y64):
        return None
    return Witness(x32, y_ort.astype(np.float32))


def refuted_disjuncts(lower: torch.Tensor, d: torch.Tensor, owner: torch.Tensor,
                      n_disjuncts: int) -> torch.Tensor:
    """(B, K) bool: disjunct k is impossible in box b (some row's lower bound of C y beats d).

    `lower` (B, m) must hold float64 lower bounds of the stacked rows C y; the margin scales
    with the magnitude of the bounds and thresholds involved.
    """
    if lower.dtype != torch.float64:
        raise TypeError("unsat may only be decided from float64 bounds")
    finite = lower[torch.isfinite(lower)]
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    d = d.to(torch.float64)
    margin = RELATIVE_MARGIN * (1.0 + scale + float(d.abs().max()) if d.numel() else 1.0)
    row_refuted = lower > d + margin
    owner_t = owner.to(lower.device)
    hits = lower.new_zeros(lower.shape[0], n_disjuncts).index_add_(1, owner_t, row_refuted.double())
    return hits > 0
