"""The attacks a planted counterexample must survive to count as hidden, in float32 torch:
random points and random corners of the box, then PGD with many restarts under several step
schedules (SoundnessBench's evaluation, scaled down for CPU), half of the restarts from the
most promising sampled points. Independent of the verifier's own attack code."""
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
    samples: int = 100_000  # random points, a quarter of them corners
    schedules: tuple = SCHEDULES


@torch.no_grad()
def _margins(model, x, input_shape, label, chunk=4096) -> torch.Tensor:
    return torch.cat([logit_margin(model, part, input_shape, torch.full((len(part),), label))
                      for part in x.split(chunk)])


def find_counterexample(model, input_shape, lo: np.ndarray, hi: np.ndarray, label: int,
                        config: AttackConfig, seed: int) -> np.ndarray | None:
    """A point of the box where f_other >= f_label, or None when every attack fails."""
    gen = torch.Generator().manual_seed(seed)
    lo_t, hi_t = torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32)
    pool = _random_points(lo_t, hi_t, config.samples, gen, corner_share=0.25)
    scores = _margins(model, pool, input_shape, label)
    if (scores >= 0).any():
        return pool[scores.argmax()].numpy()
    promising = pool[scores.topk(min(config.restarts // 2, len(pool))).indices]
    for fraction, steps in config.schedules:
        fresh = _random_points(lo_t, hi_t, config.restarts - len(promising), gen, corner_share=0.125)
        found = _pgd(model, input_shape, lo_t, hi_t, label, torch.cat([promising, fresh]), fraction, steps)
        if found is not None:
            return found.numpy()
    return None


def _random_points(lo, hi, n: int, gen, corner_share: float) -> torch.Tensor:
    """The box centre, random corners and uniform random points."""
    x = lo + (hi - lo) * torch.rand(n, lo.numel(), generator=gen)
    corners = int(corner_share * n)
    x[:corners] = torch.where(torch.rand(corners, lo.numel(), generator=gen) < 0.5, lo, hi)
    x[-1] = (lo + hi) / 2
    return x


def _pgd(model, input_shape, lo, hi, label, x, fraction, steps):
    """Signed-gradient ascent on the margin, the step decaying linearly to a tenth."""
    labels = torch.full((len(x),), label)
    for step in range(steps + 1):
        x = x.detach().requires_grad_(True)
        margin = logit_margin(model, x, input_shape, labels)
        hits = (margin.detach() >= 0).nonzero()
        if len(hits):
            return x[hits[0, 0]].detach().clone()
        if step == steps:
            return None
        (grad,) = torch.autograd.grad(margin.sum(), x)
        size = fraction * (hi - lo) * (1 - 0.9 * step / steps)
        x = torch.minimum(torch.maximum(x.detach() + size * grad.sign(), lo), hi)
    return None
