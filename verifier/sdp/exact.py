"""The same lifted SDP solved by an interior-point method (cvxpy + Clarabel, or SCS) for small
problems: the reference for tests and the benchmark.

The constraint matrices are read off `constraints.lifted` (linear in G), so both solvers see
the same relaxation. The solver's objective value is NOT a certified bound (its tolerance
applies); `certified_exact` turns its multipliers into one through `certificate.certified`.
"""
from __future__ import annotations

import numpy as np
import torch

from verifier.sdp.constraints import EQUALITIES, INEQUALITIES, lifted
from verifier.sdp.problem import SdpProblem


def constraint_matrices(prob: SdpProblem) -> dict[str, np.ndarray]:
    """Per family, the matrix (k, (N+1)^2) of its constraints on vec(G), symmetrised."""
    n = prob.n_vars + 1
    prob64 = prob.to(torch.float64, "cpu")
    basis = torch.eye(n * n, dtype=torch.float64).reshape(n * n, n, n)
    basis = (basis + basis.transpose(1, 2)) / 2
    out = {}
    for start in range(0, n * n, 4096):
        values = lifted(prob64, basis[start:start + 4096])
        for k, v in values.items():
            out.setdefault(k, []).append(v.T.numpy())
    return {k: np.concatenate(v, 1) for k, v in out.items()}


def solve_exact(prob: SdpProblem, solver: str = "CLARABEL"):
    """(values (m,), multipliers per family (m, k)): the SDP minimum of each row as the
    solver reports it (nan where it failed) and its dual variables (zeros there)."""
    import cvxpy as cp

    n = prob.n_vars + 1
    mats = constraint_matrices(prob)
    G = cp.Variable((n, n), symmetric=True)
    g = cp.vec(G, order="C")
    ineq = {k: mats[k] @ g >= 0 for k in INEQUALITIES if mats[k].shape[0]}
    eq = {k: mats[k] @ g == 0 for k in EQUALITIES if mats[k].shape[0]}
    c = cp.Parameter(n - 1)
    c0 = cp.Parameter()
    problem = cp.Problem(cp.Minimize(c @ G[0, 1:] + c0), [G >> 0, G[0, 0] == 1, *ineq.values(), *eq.values()])
    cs, c0s = prob.c.detach().cpu().double().numpy(), prob.c0.detach().cpu().double().numpy()
    values = np.full(len(cs), np.nan)
    mult = {k: np.zeros((len(cs), mats[k].shape[0])) for k in mats}
    for i in range(len(cs)):
        c.value, c0.value = cs[i], float(c0s[i])
        try:
            problem.solve(solver=solver)
        except cp.error.SolverError:
            continue
        if problem.status not in ("optimal", "optimal_inaccurate"):
            continue
        values[i] = problem.value
        for k, con in {**ineq, **eq}.items():
            mult[k][i] = np.asarray(con.dual_value).reshape(-1)
    return values, {k: torch.as_tensor(v) for k, v in mult.items()}


def certified_exact(prob: SdpProblem, solver: str = "CLARABEL"):
    """(solver values (m,), certified bounds (m,) from its multipliers): the full SDP as a
    sound bound. cvxpy's sign of equality multipliers is tried both ways (any sign is valid)."""
    from verifier.sdp.certificate import certified

    values, mult = solve_exact(prob, solver)
    bounds = []
    for sign in (1.0, -1.0):
        trial = dict(mult)
        for k in EQUALITIES:
            trial[k] = sign * mult[k]
        bounds.append(certified(prob, trial)[0].cpu())
    return values, torch.maximum(*bounds).numpy()
