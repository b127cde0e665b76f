"""Burer-Monteiro: the lifted SDP over G = U U^T with a thin factor, by an augmented Lagrangian
whose inner problems L-BFGS solves, batched over spec rows.

The multipliers it ends with feed `certificate.certified`, the only source of bounds; the
factor's objective value is never a bound. The rank starts small and grows by the eigenvector
of the dual matrix's most negative eigenvalue when the certificate says the point is not
globally optimal (the Riemannian staircase).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from verifier.sdp import lbfgs
from verifier.sdp.certificate import certified
from verifier.sdp.constraints import EQUALITIES, INEQUALITIES, factored, objective, weighted_gradient
from verifier.sdp.problem import SdpProblem


@dataclass
class SolverOptions:
    rank: int = 4  # starting rank of the factor (its first column is the primal point)
    max_rank: int = 10
    outer: int = 1000  # multiplier updates (the time limit usually ends it first)
    inner: int = 30  # L-BFGS steps per update
    sigma: float = 1.0  # penalty (fixed: larger ones make the multipliers swing)
    certify_every: int = 4
    time_limit: float = 10.0
    dtype: torch.dtype = torch.float64


@dataclass
class SdpResult:
    lower: torch.Tensor  # (m,) float64 sound lower bounds of the rows (-inf where nothing certified)
    primal: torch.Tensor  # (m,) the factor's objective: an estimate, NOT a bound
    rank: int
    rounds: int
    time: float
    history: list = field(default_factory=list)  # (seconds, best certified bounds) per certificate


def constraint_scales(prob: SdpProblem) -> dict[str, torch.Tensor]:
    """Natural magnitudes of each constraint, so that one penalty fits them all."""
    half = ((prob.in_hi - prob.in_lo) / 2).clamp(min=1e-6)
    width = (prob.pu - prob.pl).clamp(min=1e-6)
    return {"box": half ** 2, "lo": half, "hi": half, "pos": width, "ge": width, "tri": width * prob.pu,
            "out": prob.pu ** 2, "pre": (width / 2) ** 2, "relu": prob.pu * width}


def solve(prob: SdpProblem, options: SolverOptions | None = None, target: torch.Tensor | None = None,
          start: torch.Tensor | None = None, multipliers: dict | None = None) -> SdpResult:
    """Sound lower bounds of min c_i . v + c0_i over the SDP for every row i. Stops early once
    every row's certified bound exceeds `target` (m,). `start`: primal points (m, N) to begin
    at; `multipliers`: starting multipliers per family (m, k), e.g. `warmstart.lp_multipliers`
    (then the bound is never below theirs, which are certified first).

    Method of multipliers (Powell-Hestenes-Rockafellar) with a fixed penalty on the
    preconditioned problem (`Frame`); every `certify_every` rounds the multipliers are
    certified and the best bound per row kept (each is sound)."""
    opts = options or SolverOptions()
    began = time.monotonic()
    deadline = began + opts.time_limit
    work = prob.to(opts.dtype, prob.A.device)
    m, N = work.c.shape
    frame = Frame(work)
    scales = {k: v.to(opts.dtype) for k, v in constraint_scales(work).items()}
    Q = frame.to_q(_initial_factor(work, opts.rank, start))
    values = factored(work, frame.to_p(Q))
    mult = {k: torch.zeros_like(v) for k, v in values.items()}
    best = torch.full((m,), float("-inf"), dtype=torch.float64, device=Q.device)
    if multipliers is not None:
        mult = {k: multipliers[k].to(Q.device, opts.dtype) * scales[k] / frame.obj_scale.unsqueeze(1)
                for k in values}
        best = certified(prob, multipliers)[0]
    sigma = torch.full((m,), opts.sigma, dtype=opts.dtype, device=Q.device)
    history, rounds = [(time.monotonic() - began, best.clone())], 0
    for rounds in range(1, opts.outer + 1):
        Q = lbfgs.minimize(_lagrangian(work, mult, sigma, scales, frame), Q, opts.inner, deadline=deadline)
        values = factored(work, frame.to_p(Q))
        s = sigma.unsqueeze(1)
        for k in INEQUALITIES:
            mult[k] = (mult[k] - s * values[k] / scales[k]).clamp(min=0)
        for k in EQUALITIES:
            mult[k] = mult[k] - s * values[k] / scales[k]
        last = rounds == opts.outer or time.monotonic() > deadline
        if rounds % opts.certify_every == 0 or last:
            bound, vec, lam = certified(prob, true_multipliers(mult, scales, frame))
            best = torch.maximum(best, bound)
            history.append((time.monotonic() - began, best.clone()))
            if last or (target is not None and bool((best > target).all())):
                break
            if Q.shape[2] < opts.max_rank and bool((lam < -1e-6 * (1 + bound.abs())).any()):
                Q = _add_column(Q, frame, vec.to(Q.dtype), lam)
    primal = objective(work, frame.to_p(Q)).to(torch.float64)
    return SdpResult(best, primal, Q.shape[2], rounds, time.monotonic() - began, history)


def true_multipliers(mult: dict, scales: dict, frame: Frame) -> dict:
    """Multipliers of the unscaled problem (the inner problem saw g / scale and the objective
    divided by frame.obj_scale)."""
    return {k: (v / scales[k] * frame.obj_scale.unsqueeze(1)).to(torch.float64) for k, v in mult.items()}


def _initial_factor(prob: SdpProblem, rank: int, start: torch.Tensor | None) -> torch.Tensor:
    m, N = prob.c.shape
    if start is None:
        x = ((prob.in_lo + prob.in_hi) / 2).expand(m, -1)
        start = prob.forward(x)
    gen = torch.Generator(device="cpu").manual_seed(0)
    P = torch.randn(m, N, rank, generator=gen, dtype=prob.A.dtype).to(prob.A.device) * 1e-2
    P[..., 0] = start.to(P.dtype)
    return P


class Frame:
    """Preconditioning: the solver's variable is Q with P = centre e_1^T + radius * Q, so that
    every variable's box is [-1, 1] (an affine change of variables, G = L G~ L^T), and the
    objective is divided by its spread over the box, so that one penalty fits all rows."""

    def __init__(self, prob: SdpProblem):
        self.centre = torch.cat([(prob.in_lo + prob.in_hi) / 2, prob.pu / 2])
        self.radius = torch.cat([(prob.in_hi - prob.in_lo) / 2, prob.pu / 2]).clamp(min=1e-9)
        self.obj_scale = ((prob.c.abs() * self.radius).sum(1)).clamp(min=1e-9)

    def to_p(self, Q: torch.Tensor) -> torch.Tensor:
        P = Q * self.radius.unsqueeze(1)
        P[..., 0] += self.centre
        return P

    def to_q(self, P: torch.Tensor) -> torch.Tensor:
        Q = P.clone()
        Q[..., 0] -= self.centre
        return Q / self.radius.unsqueeze(1)


def _lagrangian(prob: SdpProblem, mult: dict, sigma: torch.Tensor, scales: dict, frame: Frame):
    """The PHR augmented Lagrangian per row (objective / frame.obj_scale), and its gradient in
    Q: the gradient of the plain Lagrangian at the first-order multiplier estimates."""
    s = sigma.unsqueeze(1)
    inv = (1.0 / frame.obj_scale).unsqueeze(1)

    def fun(Q: torch.Tensor):
        P = frame.to_p(Q)
        values = factored(prob, P)
        total = objective(prob, P) * inv.squeeze(1)
        weights = {}
        for k in INEQUALITIES:
            shifted = (mult[k] - s * values[k] / scales[k]).clamp(min=0)
            total = total + ((shifted ** 2 - mult[k] ** 2) / (2 * s)).sum(1)
            weights[k] = shifted / scales[k] / inv
        for k in EQUALITIES:
            h = values[k] / scales[k]
            total = total + (-mult[k] * h + s / 2 * h ** 2).sum(1)
            weights[k] = (mult[k] - s * h) / scales[k] / inv
        grad = weighted_gradient(prob, P, weights) * inv.unsqueeze(2)
        return total, grad * frame.radius.unsqueeze(1)

    return fun


def _add_column(Q: torch.Tensor, frame: Frame, vec: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """One more column: the escape direction (e_0 part folded onto the primal point) where the
    dual matrix has a negative eigenvalue, zero elsewhere."""
    P = frame.to_p(Q)
    column = (vec[:, :1] * P[..., 0] + vec[:, 1:]) / frame.radius
    column = torch.where((lam < 0).unsqueeze(1), column * 0.1, torch.zeros_like(column))
    return torch.cat([Q, column.unsqueeze(2)], 2)
