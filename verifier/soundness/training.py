"""Adversarial training of the base network: every box robustly classified as its label.

Per box the loss is a hinge on the logit margin (f_label - f_other >= `robust_margin`) at its
centre, at random points and random corners, and at the points PGD found this epoch and in a
window of recent epochs (SoundnessBench keeps such a window, so that training keeps removing
what an attack could find).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from verifier.soundness.data import Box


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 300
    lr: float = 1e-2
    restarts: int = 16  # PGD starts per box and epoch
    pgd_steps: int = 8
    window: int = 25  # epochs of PGD points kept in the loss
    samples: int = 32  # random points (half of them corners) per box and epoch
    robust_margin: float = 0.5  # logits: f_label - f_other wanted everywhere in the boxes


def logit_margin(model, x: torch.Tensor, input_shape, label: torch.Tensor) -> torch.Tensor:
    """f_other(x) - f_label(x) for flat inputs x (N, n): >= 0 means misclassified."""
    y = model(x.reshape(len(x), *input_shape))
    own = y.gather(1, label.view(-1, 1)).squeeze(1)
    return y.gather(1, (1 - label).view(-1, 1)).squeeze(1) - own


@dataclass
class _Boxes:
    """All boxes stacked: lo, hi, centre (K, n) and labels (K,)."""

    lo: torch.Tensor
    hi: torch.Tensor
    centre: torch.Tensor
    label: torch.Tensor

    @staticmethod
    def of(boxes: list[Box]) -> "_Boxes":
        stack = lambda attr: torch.as_tensor(np.stack([getattr(b, attr) for b in boxes]))
        return _Boxes(stack("lo"), stack("hi"), stack("centre"), torch.tensor([b.label for b in boxes]))

    def repeat(self, n: int):
        owner = torch.arange(len(self.lo)).repeat_interleave(n)
        return owner, self.lo[owner], self.hi[owner]


def train(model, boxes: list[Box], input_shape, config: TrainConfig, seed: int):
    """Trains `model` in place (float32, CPU) and returns it in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    stacked = _Boxes.of(boxes)
    window: deque = deque(maxlen=config.window)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs)
    for _ in range(config.epochs):
        window.append(_pgd_points(model, stacked, input_shape, config, gen))
        x, owner = _training_points(stacked, window, config, gen)
        margin = logit_margin(model, x, input_shape, stacked.label[owner])
        loss = F.relu(config.robust_margin + margin).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        schedule.step()
    return model.eval()


def _uniform(lo: torch.Tensor, hi: torch.Tensor, gen) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(lo.shape, generator=gen)


def _pgd_points(model, boxes: _Boxes, input_shape, config: TrainConfig, gen):
    """Signed-gradient ascent on the margin from random starts in every box: end points, owners."""
    owner, lo, hi = boxes.repeat(config.restarts)
    label = boxes.label[owner]
    x = _uniform(lo, hi, gen)
    for step in range(config.pgd_steps):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(logit_margin(model, x, input_shape, label).sum(), x)
        size = (hi - lo) * 0.25 * (1 - step / config.pgd_steps)
        x = torch.minimum(torch.maximum(x.detach() + size * grad.sign(), lo), hi)
    return x, owner


def _training_points(boxes: _Boxes, window, config: TrainConfig, gen):
    """Centres, random points and corners of every box, and the window's PGD points."""
    owner, lo, hi = boxes.repeat(config.samples)
    points = _uniform(lo, hi, gen)
    corners = torch.arange(len(owner)) % 2 == 0
    points[corners] = torch.where(torch.rand(lo[corners].shape, generator=gen) < 0.5, lo[corners], hi[corners])
    parts = [(boxes.centre, torch.arange(len(boxes.lo))), (points, owner), *window]
    return torch.cat([p for p, _ in parts]), torch.cat([o for _, o in parts])
