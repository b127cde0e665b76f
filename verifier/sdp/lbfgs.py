"""L-BFGS batched over independent problems: one curvature history and one backtracking
(Armijo) line search per row, all rows evaluated together. (Our own, as torch.optim's import
costs seconds of start-up and its L-BFGS couples the rows.)"""
from __future__ import annotations

import time

import torch


def minimize(fun, x: torch.Tensor, iterations: int, history: int = 10, deadline: float | None = None,
             gtol: float = 1e-9) -> torch.Tensor:
    """fun(x) -> (values (B,), gradients like x), x (B, ...) with rows independent problems."""
    B = x.shape[0]
    f, g = fun(x)
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    gamma = torch.ones(B, dtype=x.dtype, device=x.device)
    for it in range(iterations):
        gf = g.reshape(B, -1)
        if float(gf.norm(dim=1).max()) < gtol or (deadline is not None and time.monotonic() > deadline):
            break
        d = -_two_loop(gf, pairs, gamma)
        slope = (d * gf).sum(1)
        uphill = slope >= 0
        d = torch.where(uphill.unsqueeze(1), -gf, d)
        slope = torch.where(uphill, -(gf * gf).sum(1), slope)
        step = torch.ones_like(f) if pairs else (1.0 / gf.norm(dim=1).clamp(min=1.0))
        x_new, f_new, g_new = _line_search(fun, x, f, g, d.reshape(x.shape), slope, step)
        s, y = (x_new - x).reshape(B, -1), (g_new - g).reshape(B, -1)
        sy = (s * y).sum(1)
        good = sy > 1e-12 * s.norm(dim=1) * y.norm(dim=1)
        pairs.append((s, y, torch.where(good, 1.0 / torch.where(good, sy, torch.ones_like(sy)), torch.zeros_like(sy))))
        pairs = pairs[-history:]
        gamma = torch.where(good, sy / (y * y).sum(1).clamp(min=1e-300), gamma)
        x, f, g = x_new, f_new, g_new
    return x


def _two_loop(g: torch.Tensor, pairs, gamma: torch.Tensor) -> torch.Tensor:
    q = g.clone()
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * (s * q).sum(1)
        q -= a.unsqueeze(1) * y
        alphas.append(a)
    r = gamma.unsqueeze(1) * q
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        b = rho * (y * r).sum(1)
        r += s * (a - b).unsqueeze(1)
    return r


def _line_search(fun, x, f, g, d, slope, step, c1: float = 1e-4, tries: int = 20):
    """Per row: halve the step until the Armijo condition holds; rows that never satisfy it stay."""
    B = x.shape[0]
    shape = (B,) + (1,) * (x.dim() - 1)
    x_new, f_new, g_new = x.clone(), f.clone(), g.clone()
    done = torch.zeros(B, dtype=torch.bool, device=x.device)
    for _ in range(tries):
        trial = x + step.reshape(shape) * d
        ft, gt = fun(trial)
        ok = ~done & torch.isfinite(ft) & (ft <= f + c1 * step * slope)
        x_new[ok], f_new[ok], g_new[ok] = trial[ok], ft[ok], gt[ok]
        done |= ok
        if bool(done.all()):
            break
        step = torch.where(done, step, step / 2)
    return x_new, f_new, g_new
