"""Falsification along inputs that gradients cannot move.

A free input that reaches the output only through step functions or exact ops (a patch
position cast to an integer, as in VNN-COMP's cctsdb_yolo) leaves the output piecewise
constant in it: PGD has no direction and random points repeat cells. `step_coordinates` finds
such inputs (their gradient is zero at every probe point when steps pass their true, zero,
derivative); `grid_candidates` walks a grid over the box along them, in a random order, with
the other free inputs at random, and yields the points whose margin reaches 0.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from verifier.attack.pgd import disjunct_tensors
from verifier.graph.evaluate import evaluate
from verifier.ops.step import no_straight_through
from verifier.spec.region import Region

_PROBES = 4
_CHUNK = 256


def step_coordinates(graph, region: Region, seed: int = 0) -> np.ndarray:
    """Flat indices of the free inputs with a zero gradient at _PROBES random points."""
    free = region.hi > region.lo
    if not free.any():
        return np.zeros(0, dtype=np.int64)
    gen = torch.Generator().manual_seed(seed)
    lo = torch.as_tensor(region.lo, dtype=graph.dtype, device=graph.device)
    hi = torch.as_tensor(region.hi, dtype=graph.dtype, device=graph.device)
    x = (lo + (hi - lo) * torch.rand(_PROBES, lo.numel(), generator=gen).to(lo)).requires_grad_(True)
    with no_straight_through(), torch.enable_grad():
        y = evaluate(graph, x)
        if not y.requires_grad:  # nothing continuous reaches the output
            return np.nonzero(free)[0]
        grad, = torch.autograd.grad(y.sum(), x, allow_unused=True)
    moved = np.zeros(lo.numel(), dtype=bool) if grad is None else (grad != 0).any(0).cpu().numpy()
    return np.nonzero(free & ~moved)[0]


def grid_size(n_coordinates: int, points: int) -> int:
    """Grid points per coordinate for about `points` in all (0 when fewer than 2 fit)."""
    if n_coordinates == 0:
        return 0
    per_axis = int(math.floor(points ** (1.0 / n_coordinates) + 1e-9))
    return per_axis if per_axis >= 2 else 0


def grid_candidates(graph, region: Region, coordinates: np.ndarray, per_axis: int, deadline: float,
                    seed: int = 0, points: int | None = None):
    """Yield batches (numpy float64, flat) of grid points whose margin is <= 0 for a disjunct:
    `points` of them (default: the whole grid; with no coordinates, only random points)."""
    rng = np.random.default_rng(seed)
    shape = (per_axis,) * len(coordinates)
    total = math.prod(shape) if points is None else points
    order = rng.permutation(math.prod(shape))
    axes = [np.linspace(region.lo[c], region.hi[c], per_axis) for c in coordinates]
    C, d = disjunct_tensors(region, graph.device, graph.dtype)
    for start in range(0, total, _CHUNK):
        if time.monotonic() > deadline:
            return
        size = min(_CHUNK, total - start)
        x = region.lo + (region.hi - region.lo) * rng.random((size, region.lo.size))
        if len(coordinates):
            cells = np.unravel_index(order[start:start + size], shape)
            for c, axis, cell in zip(coordinates, axes, cells):
                x[:, c] = axis[cell]
        with torch.no_grad():
            y = evaluate(graph, torch.as_tensor(x, dtype=graph.dtype, device=graph.device)).reshape(size, -1)
        margin = (torch.einsum("kro,no->nkr", C, y) - d).amax(-1).amin(-1)
        hits = (margin <= 0).cpu().numpy()
        if hits.any():
            yield x[hits]
