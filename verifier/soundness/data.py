"""The synthetic two-class data of one network: L-inf boxes around random centres, each with
a label, and for the planted ones a point (on a corner or strictly inside) that the
network is trained to misclassify.

Inputs live in [-1, 1]; boxes of one network do not intersect. Everything is float32, so
that the boxes and points written to the files are exactly the ones trained on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATA_RANGE = 1.0
CORNER, INTERIOR = "corner", "interior"
PLACEMENTS = (CORNER, INTERIOR)
# An interior point keeps this fraction of the radius (plus its pocket) away from the faces.
_INTERIOR_SPREAD = 0.6


@dataclass
class Box:
    """The L-inf box of one spec around `centre` (flat float32); `label` must win inside it."""

    centre: np.ndarray
    radius: float
    label: int
    placement: str | None = None  # CORNER or INTERIOR for a planted box, None for a clean one
    planted: np.ndarray | None = None  # the point trained to be misclassified (flat float32)

    @property
    def lo(self) -> np.ndarray:
        return (self.centre - np.float32(self.radius)).astype(np.float32)

    @property
    def hi(self) -> np.ndarray:
        return (self.centre + np.float32(self.radius)).astype(np.float32)

    @property
    def target(self) -> int:
        return 1 - self.label

    def with_radius(self, radius: float) -> "Box":
        """The same box shrunk (or grown) about its centre; a corner plant moves with the corner."""
        planted = self.planted
        if self.placement == CORNER:
            signs = np.sign(self.planted - self.centre)
            planted = np.where(signs > 0, self.centre + np.float32(radius), self.centre - np.float32(radius))
            planted = planted.astype(np.float32)
        return Box(self.centre, radius, self.label, self.placement, planted)


def sample_boxes(rng: np.random.Generator, n_inputs: int, radius: float, placements: list[str],
                 n_clean: int, pocket_fraction: float) -> list[Box]:
    """One planted box per placement, then n_clean clean ones, with random labels."""
    centres = _separated_centres(rng, n_inputs, radius, len(placements) + n_clean)
    boxes = []
    for k, centre in enumerate(centres):
        label = int(rng.integers(2))
        if k < len(placements):
            planted = _planted_point(rng, centre, radius, placements[k], pocket_fraction)
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


def _planted_point(rng, centre: np.ndarray, radius: float, placement: str, pocket_fraction: float) -> np.ndarray:
    r = np.float32(radius)
    if placement == CORNER:
        signs = rng.integers(2, size=centre.size) * 2 - 1
        return np.where(signs > 0, centre + r, centre - r).astype(np.float32)
    if placement == INTERIOR:
        reach = _INTERIOR_SPREAD * (1 - pocket_fraction) * radius
        return (centre + rng.uniform(-reach, reach, centre.size)).astype(np.float32)
    raise ValueError(f"unknown placement '{placement}' ({', '.join(PLACEMENTS)})")


def in_pocket(x, planted: np.ndarray, pocket_radius: float):
    """Which rows of x (N, n) lie within the L-inf pocket around the planted point (torch or numpy)."""
    import torch

    diff = x - torch.as_tensor(planted, dtype=x.dtype)
    return diff.abs().amax(-1) < pocket_radius
