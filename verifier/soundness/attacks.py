"""The attacks a planted counterexample must survive to count as hidden, in float32 torch:
random points and random corners of the box, then PGD with many restarts under several step
schedules (SoundnessBench's evaluation, scaled down for CPU). Independent of the verifier's
own attack code."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from verifier.soundness.training import logit_margin

# (step size as a fraction of the box width, steps): large steps first, then finer ones.
SCHEDULES = ((0.125, 100), (0.01, 100), (0.01, 250), (0.005, 500))


@dataclass(frozen=True)
class AttackConfig:
    restarts: int = 256
    samples: int = 20_000  # random points, a quarter of them corners
    schedules: tuple = SCHEDULES


def find_counterexample(model, input_shape, lo: np.ndarray, hi: np.ndarray, label: int,
                        config: AttackConfig, seed: int) -> np.ndarray | None:
    """A point of the box where f_other >= f_label, or None when every attack fails."""
    gen = torch.Generator().manual_seed(seed)
    lo_t, hi_t = torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32)
    found = _sample(model, input_shape, lo_t, hi_t, label, config.samples, gen)
    for fraction, steps in config.schedules:
        if found is not None:
            break
        found = _pgd(model, input_shape, lo_t, hi_t, label, config.restarts, fraction, steps, gen)
    return None if found is None else found.numpy()


def _random_starts(lo, hi, n: int, gen, corner_share: float) -> torch.Tensor:
    u = torch.rand(n, lo.numel(), generator=gen)
    x = lo + (hi - lo) * u
    corners = torch.arange(n) < int(corner_share * n)
    x[corners] = torch.where(torch.rand(int(corners.sum()), lo.numel(), generator=gen) < 0.5, lo, hi)
    x[-1] = (lo + hi) / 2
    return x


def _first_hit(x: torch.Tensor, margin: torch.Tensor) -> torch.Tensor | None:
    hits = (margin >= 0).nonzero()
    return x[hits[0, 0]].detach().clone() if len(hits) else None


@torch.no_grad()
def _sample(model, input_shape, lo, hi, label, n, gen, chunk=4096):
    x = _random_starts(lo, hi, n, gen, corner_share=0.25)
    for part in x.split(chunk):
        hit = _first_hit(part, logit_margin(model, part, input_shape, torch.full((len(part),), label)))
        if hit is not None:
            return hit
    return None


def _pgd(model, input_shape, lo, hi, label, restarts, fraction, steps, gen):
    """Signed-gradient ascent on the margin, step size decaying linearly to a tenth."""
    x = _random_starts(lo, hi, restarts, gen, corner_share=0.125)
    labels = torch.full((restarts,), label)
    for step in range(steps + 1):
        x.requires_grad_(True)
        margin = logit_margin(model, x, input_shape, labels)
        hit = _first_hit(x, margin.detach())
        if hit is not None or step == steps:
            return hit
        (grad,) = torch.autograd.grad(margin.sum(), x)
        size = fraction * (hi - lo) * (1 - 0.9 * step / steps)
        x = torch.minimum(torch.maximum(x.detach() + size * grad.sign(), lo), hi)
    return None
