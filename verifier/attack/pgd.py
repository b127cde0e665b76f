"""Falsification by projected gradient descent on the spec margin, batched over restarts and
disjuncts. It only proposes candidates; `verifier.decide.confirm_counterexample` decides.

The margin of an input for disjunct k is max_r (C_k y - d_k)_r: the input is a counterexample
for k when it is <= 0. Each restart attacks one disjunct; restarts start from the box centre,
random points and random corners, and take signed-gradient steps of a shrinking size.
"""
from __future__ import annotations

import math
import time

import torch

from verifier.graph.evaluate import evaluate
from verifier.spec.region import Region

# Threshold of a padding row: its margin is -1e30, so it never binds; a disjunct with no rows
# at all is then met by every output, as it should be.
_PADDING_THRESHOLD = 1e30
_STEP = 0.05  # first step length, as a fraction of the box width


def disjunct_tensors(region: Region, device, dtype):
    """C (K, R, n_out) and d (K, R) padded to the widest disjunct with rows that never bind."""
    K = len(region.disjuncts)
    R = max(1, max(len(dj.d) for dj in region.disjuncts))
    C = torch.zeros(K, R, region.n_outputs, dtype=dtype, device=device)
    d = torch.full((K, R), _PADDING_THRESHOLD, dtype=dtype, device=device)
    for k, dj in enumerate(region.disjuncts):
        C[k, : len(dj.d)] = torch.as_tensor(dj.C, dtype=dtype)
        d[k, : len(dj.d)] = torch.as_tensor(dj.d, dtype=dtype)
    return C, d


def margins(y: torch.Tensor, C: torch.Tensor, d: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Margin (N,) of outputs y (N, n_out) for disjunct `which` (N,)."""
    rows = torch.einsum("nro,no->nr", C[which], y) - d[which]
    return rows.amax(-1)


def pgd_candidates(graph, region: Region, restarts: int, steps: int, deadline: float,
                   seed: int = 0, pool_size: int = 0):
    """Yield batches of candidate inputs (numpy float64, flat) whose margin reached <= 0.

    With pool_size > 0, that many random points are scored first: hits among them are
    yielded at once, and the best of them per disjunct become the PGD starting points.
    """
    device, dtype = graph.device, graph.dtype
    gen = torch.Generator(device="cpu").manual_seed(seed)
    lo = torch.as_tensor(region.lo, dtype=dtype, device=device)
    hi = torch.as_tensor(region.hi, dtype=dtype, device=device)
    C, d = disjunct_tensors(region, device, dtype)
    K = C.shape[0]
    which = torch.arange(K, device=device).repeat(max(1, restarts // K))
    x = _random_points(lo, hi, len(which), gen)
    if pool_size > 0:
        pool, pool_margins = _score_pool(graph, lo, hi, C, d, pool_size, gen)
        best = pool_margins.min(1).values
        hits = best <= 0
        if hits.any():
            yield pool[hits][best[hits].argsort()].cpu().double().numpy()
        per_disjunct = max(1, len(which) // (2 * K))  # the other half stays uniform, for diversity
        picks = pool_margins.topk(min(per_disjunct, len(pool)), dim=0, largest=False).indices
        x[: picks.numel()] = pool[picks.T.reshape(-1)]
        which[: picks.numel()] = torch.arange(K, device=device).repeat_interleave(picks.shape[0])
    yield from pgd_steps(graph, C, d, which, x, lo, hi, steps, deadline)


def box_pgd_candidates(graph, region: Region, lo: torch.Tensor, hi: torch.Tensor, steps: int,
                       deadline: float, starts: torch.Tensor | None = None):
    """PGD inside each of several boxes (N, n) of the region, from the given points (N, n) or
    their centres, against every disjunct."""
    C, d = disjunct_tensors(region, graph.device, graph.dtype)
    K = C.shape[0]
    x = (lo + hi) / 2 if starts is None else starts
    lo, hi, x = (t.to(graph.dtype).repeat_interleave(K, 0) for t in (lo, hi, x))
    which = torch.arange(K, device=graph.device).repeat(len(lo) // K)
    yield from pgd_steps(graph, C, d, which, x, lo, hi, steps, deadline, signed=True)


def pgd_steps(graph, C, d, which, x, lo, hi, steps: int, deadline: float, signed: bool = False,
              penalty=None, snap_every: int = 0, margin_weight: torch.Tensor | None = None):
    """Gradient steps of a shrinking size on the margins; yields inputs that hit.

    Adam's per-coordinate scaling (without bias correction, so the first steps are long)
    found ACAS Xu's narrow counterexamples (1_9 prop_7) where signed steps did not; short
    runs from box centres (inside branch and bound) find more with signed steps.

    penalty (values of every tensor -> (N,), >= 0), when given, is added to the margin, each
    term relative to its size at the start: the run stays in (or walks into) the part of the
    box where the penalty is 0, such as a branch-and-bound subdomain. margin_weight (N,)
    scales each run's margin term (0: the run only walks into that part). With snap_every, every
    that many steps the box corner nearest to each point is tried too: a run that has come
    close to a vertex may never settle on it."""
    width = hi - lo
    mean, square = torch.zeros_like(x), torch.zeros_like(x)
    scales = None
    for step in range(steps + 1):
        if time.monotonic() > deadline:
            return
        x = x.detach().requires_grad_(True)
        values = evaluate(graph, x, keep_all=penalty is not None)
        output = values if penalty is None else values[graph.output_name]
        margin = margins(output.reshape(len(x), -1), C, d, which)
        hit = margin.detach() <= 0
        if hit.any():
            yield x.detach()[hit].cpu().double().numpy()
        if snap_every and step % snap_every == 0:
            yield from _snapped_hits(graph, C, d, which, x.detach(), lo, hi)
        if step == steps:
            return
        objective = margin
        if penalty is not None:
            extra = penalty(values)
            if scales is None:
                scales = margin.detach().abs().clamp(min=1e-6), extra.detach().clamp(min=1e-12)
            weight = 1.0 if margin_weight is None else margin_weight
            objective = weight * margin / scales[0] + extra / scales[1]
        (grad,) = torch.autograd.grad(objective.sum(), x)
        decay = 0.5 * (1 + math.cos(math.pi * step / steps))
        if signed:
            x = x.detach() - 0.5 * width * (0.02 + 0.98 * decay) / 4 * grad.sign()
        else:
            mean.mul_(0.9).add_(grad, alpha=0.1)
            square.mul_(0.999).addcmul_(grad, grad, value=0.001)
            x = x.detach() - _STEP * width * (0.01 + 0.99 * decay) * mean / (square.sqrt() + 1e-12)
        x = torch.minimum(torch.maximum(x, lo), hi)


@torch.no_grad()
def _snapped_hits(graph, C, d, which, x, lo, hi):
    corner = torch.where(x - lo < hi - x, lo, hi)
    margin = margins(evaluate(graph, corner).reshape(len(x), -1), C, d, which)
    hit = margin <= 0
    if hit.any():
        yield corner[hit].cpu().double().numpy()


def _random_points(lo, hi, n, gen):
    """The box centre, random corners and uniform random points."""
    u = torch.rand(n, lo.numel(), generator=gen).to(lo)
    points = lo + (hi - lo) * u
    points[0] = (lo + hi) / 2
    corners = slice(n // 2, n // 2 + n // 8)
    points[corners] = torch.where(u[corners] < 0.5, lo, hi)
    return points


@torch.no_grad()
def _score_pool(graph, lo, hi, C, d, size, gen, chunk=8192):
    """Random points (P, n) and their margins (P, K) for every disjunct."""
    pool = _random_points(lo, hi, size, gen)
    return pool, disjunct_margins(graph, pool, C, d, chunk)


@torch.no_grad()
def disjunct_margins(graph, points: torch.Tensor, C: torch.Tensor, d: torch.Tensor, chunk: int) -> torch.Tensor:
    """Margins (P, K) of points (P, n) for every disjunct (<= 0: violated), evaluated `chunk`
    points at a time."""
    scores = []
    for part in points.split(chunk):
        y = evaluate(graph, part).reshape(len(part), -1)
        scores.append((torch.einsum("kro,po->pkr", C, y) - d).amax(-1))
    return torch.cat(scores).reshape(len(points), C.shape[0])
