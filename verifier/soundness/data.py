"""The synthetic two-class data of one network: L-inf boxes around random centres, each with
a label, and for the planted ones a point (on a corner or strictly inside) where a pocket of
the other class will be planted.

Inputs live in [-1, 1]; the boxes of one network lie at least a radius apart. Everything is
float32, so that the boxes and points written to the files are exactly the ones used.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATA_RANGE = 1.0
CORNER, INTERIOR = "corner", "interior"
PLACEMENTS = (CORNER, INTERIOR)
# An interior point lies within this fraction of the radius from the centre (strictly inside).
_INTERIOR_REACH = 0.5


@dataclass
class Box:
    """The L-inf box of one spec around `centre` (flat float32); `label` must win inside it."""

    centre: np.ndarray
    radius: float
    label: int
    placement: str | None = None  # CORNER or INTERIOR for a planted box, None for a clean one
    planted: np.ndarray | None = None  # the planted point (flat float32)

    @property
    def lo(self) -> np.ndarray:
        return (self.centre - np.float32(self.radius)).astype(np.float32)

    @property
    def hi(self) -> np.ndarray:
        return (self.centre + np.float32(self.radius)).astype(np.float32)


def sample_boxes(rng: np.random.Generator, n_inputs: int, radius: float, placements: list[str],
                 n_clean: int) -> list[Box]:
    """One planted box per placement, then n_clean clean ones; random labels, both classes present."""
    count = len(placements) + n_clean
    centres = _separated_centres(rng, n_inputs, radius, count)
    labels = rng.permutation(np.arange(count) % 2).tolist()
    boxes = []
    for k, (centre, label) in enumerate(zip(centres, labels)):
        if k < len(placements):
            planted = _planted_point(rng, centre, radius, placements[k])
            boxes.append(Box(centre, radius, label, placements[k], planted))
        else:
            boxes.append(Box(centre, radius, label))
    return boxes


def _separated_centres(rng, n_inputs: int, radius: float, count: int) -> list[np.ndarray]:
    """Centres in [-1 + r, 1 - r]^n whose boxes are at least one radius apart."""
    centres: list[np.ndarray] = []
    while len(centres) < count:
        c = rng.uniform(-DATA_RANGE + radius, DATA_RANGE - radius, n_inputs).astype(np.float32)
        if all(np.abs(c - other).max() > 3 * radius for other in centres):
            centres.append(c)
    return centres


def _planted_point(rng, centre: np.ndarray, radius: float, placement: str) -> np.ndarray:
    lo, hi = centre - np.float32(radius), centre + np.float32(radius)
    if placement == CORNER:  # exactly the box's corner, as the box is computed and written
        return np.where(rng.integers(2, size=centre.size) > 0, hi, lo).astype(np.float32)
    if placement == INTERIOR:
        reach = _INTERIOR_REACH * radius
        return (centre + rng.uniform(-reach, reach, centre.size)).astype(np.float32)
    raise ValueError(f"unknown placement '{placement}' ({', '.join(PLACEMENTS)})")
