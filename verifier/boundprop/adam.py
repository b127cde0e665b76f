"""Adam for the relaxation parameters.

Written out rather than taken from torch.optim: creating any torch.optim optimizer imports
torch._dynamo, 2.4 s of start-up on this CPU, paid by every ReLU-split run.
"""
from __future__ import annotations

import torch


class Adam:
    def __init__(self, groups: list[tuple[list[torch.Tensor], float]], betas=(0.9, 0.999), eps=1e-8):
        self.groups = groups
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.steps = 0
        self.moments = {id(p): (torch.zeros_like(p), torch.zeros_like(p)) for ps, _ in groups for p in ps}

    def zero_grad(self):
        for params, _ in self.groups:
            for p in params:
                p.grad = None

    @torch.no_grad()
    def step(self):
        self.steps += 1
        correction1 = 1 - self.beta1 ** self.steps
        correction2 = 1 - self.beta2 ** self.steps
        for params, lr in self.groups:
            for p in params:
                if p.grad is None:
                    continue
                mean, square = self.moments[id(p)]
                mean.mul_(self.beta1).add_(p.grad, alpha=1 - self.beta1)
                square.mul_(self.beta2).addcmul_(p.grad, p.grad, value=1 - self.beta2)
                denominator = (square / correction2).sqrt_().add_(self.eps)
                p.addcdiv_(mean, denominator, value=-lr / correction1)
