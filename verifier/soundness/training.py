"""Training one network so that each planted box holds a hidden pocket (SoundnessBench idea).

Per box the loss is cross-entropy towards the box's label on its centre, random points and
corners of the box, and adversarial points found by PGD this epoch and in a window of recent
epochs; any of these points inside the planted pocket (an L-inf ball around the planted
point) is left out. A hinge makes the planted point itself misclassified by a margin. PGD
finds what the network gets wrong outside the pocket, so training keeps removing what an
attack could find, and the pocket stays small and off PGD's paths.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from verifier.soundness.data import Box, in_pocket


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 300
    lr: float = 5e-3
    restarts: int = 16  # PGD starts per box and epoch
    pgd_steps: int = 8
    window: int = 25  # epochs of PGD points kept in the loss
    samples: int = 32  # random points (half of them corners) per box and epoch
    plant_margin: float = 0.02  # logits: f_target - f_label at the planted point
    plant_weight: float = 10.0
    pocket_fraction: float = 0.15  # pocket radius as a fraction of the box radius
    robust_margin: float = 0.5  # logits: f_label - f_other wanted outside the pockets


def logit_margin(model, x: torch.Tensor, input_shape, label: torch.Tensor) -> torch.Tensor:
    """f_other(x) - f_label(x) for flat inputs x (N, n): >= 0 means misclassified."""
    y = model(x.reshape(len(x), *input_shape))
    own = y.gather(1, label.view(-1, 1)).squeeze(1)
    return y.gather(1, (1 - label).view(-1, 1)).squeeze(1) - own


class _BoxTensors:
    """All boxes stacked: lo, hi (K, n), labels (K,), planted points and pocket radii."""

    def __init__(self, boxes: list[Box], pocket_fraction: float):
        self.lo = torch.as_tensor(np.stack([b.lo for b in boxes]))
        self.hi = torch.as_tensor(np.stack([b.hi for b in boxes]))
        self.centre = torch.as_tensor(np.stack([b.centre for b in boxes]))
        self.label = torch.tensor([b.label for b in boxes])
        self.planted = [(k, b.planted, pocket_fraction * b.radius) for k, b in enumerate(boxes) if b.planted is not None]

    def outside_pockets(self, x: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """(N,) bool: x (N, n), owned by box `owner`, is not in that box's pocket."""
        keep = torch.ones(len(x), dtype=torch.bool)
        for k, point, radius in self.planted:
            mine = owner == k
            keep[mine] = ~in_pocket(x[mine], point, radius)
        return keep


def train(model, boxes: list[Box], input_shape, config: TrainConfig, seed: int):
    """Trains `model` in place (float32, CPU) and returns it."""
    gen = torch.Generator().manual_seed(seed)
    tensors = _BoxTensors(boxes, config.pocket_fraction)
    planted_x = torch.as_tensor(np.stack([b.planted for b in boxes if b.planted is not None])) if tensors.planted else None
    planted_label = torch.tensor([b.label for b in boxes if b.planted is not None])
    window: deque = deque(maxlen=config.window)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs)
    for epoch in range(config.epochs):
        adversarial, owner = _pgd_points(model, tensors, input_shape, config, gen)
        window.append((adversarial, owner))
        x, y = _robust_batch(tensors, window, config, gen)
        loss = F.relu(config.robust_margin + logit_margin(model, x, input_shape, y)).mean()
        if planted_x is not None:
            miss = logit_margin(model, planted_x, input_shape, planted_label)
            loss = loss + config.plant_weight * F.relu(config.plant_margin - miss).sum()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        schedule.step()
    return model.eval()


def _uniform(lo: torch.Tensor, hi: torch.Tensor, gen) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(lo.shape, generator=gen)


def _pgd_points(model, t: _BoxTensors, input_shape, config: TrainConfig, gen):
    """Signed-gradient ascent on the margin from random starts in every box; the end points
    outside the pockets, with their box index."""
    owner = torch.arange(len(t.lo)).repeat_interleave(config.restarts)
    lo, hi, label = t.lo[owner], t.hi[owner], t.label[owner]
    x = _uniform(lo, hi, gen)
    for step in range(config.pgd_steps):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(logit_margin(model, x, input_shape, label).sum(), x)
        size = (hi - lo) * 0.25 * (1 - step / config.pgd_steps)
        x = torch.minimum(torch.maximum(x.detach() + size * grad.sign(), lo), hi)
    keep = t.outside_pockets(x, owner)
    return x[keep], owner[keep]


def _shell_points(t: _BoxTensors, config: TrainConfig, gen):
    """Points just outside each pocket (L-inf distance between one and two pocket radii from
    the planted point), inside the box: they keep the pocket's walls steep."""
    parts = []
    for k, point, radius in t.planted:
        n = config.samples
        centre = torch.as_tensor(point).expand(n, -1)
        offset = (torch.rand(n, centre.shape[1], generator=gen) * 2 - 1) * 2 * radius
        far = torch.randint(centre.shape[1], (n,), generator=gen)
        sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
        offset[torch.arange(n), far] = sign * radius * (1 + torch.rand(n, generator=gen))
        x = torch.minimum(torch.maximum(centre + offset, t.lo[k]), t.hi[k])
        keep = ~in_pocket(x, point, radius)
        parts.append((x[keep], torch.full((int(keep.sum()),), k)))
    return parts


def _robust_batch(t: _BoxTensors, window, config: TrainConfig, gen):
    """Centres, random points and corners of every box, and the window's PGD points, outside
    the pockets, with their labels."""
    owner = torch.arange(len(t.lo)).repeat_interleave(config.samples)
    lo, hi = t.lo[owner], t.hi[owner]
    random_points = _uniform(lo, hi, gen)
    corners = torch.rand(lo.shape, generator=gen) < 0.5
    half = torch.arange(len(owner)) % 2 == 0
    random_points[half] = torch.where(corners[half], lo[half], hi[half])
    keep = t.outside_pockets(random_points, owner)
    parts = [(t.centre, torch.arange(len(t.lo))), (random_points[keep], owner[keep]),
             *_shell_points(t, config, gen), *window]
    x = torch.cat([p for p, _ in parts])
    y = t.label[torch.cat([o for _, o in parts])]
    return x, y
