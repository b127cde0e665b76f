"""The same encoding as a mixed-integer program (scipy's HiGHS `milp`), one per disjunct.

ReLU with widened bounds l < 0 < u and binary a (Tjeng et al.):
    y >= 0, y >= z, y <= z - l (1 - a), y <= u a.
An open MaxPool window over inputs x_k (bounds l_k, u_k, U = max u_k), binaries a_k:
    m >= x_k, m <= x_k + (U - l_k)(1 - a_k), sum a_k = 1.
Split constraints are variable bounds. The objective is 0: HiGHS stops at the first feasible
point. HiGHS works in float64 with feasibility tolerances, so its answers only propose: a
feasible point is a candidate for Query.confirm, and its "infeasible" is not an exact proof
(see verifier.smt.stage for how the stage uses it).
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from verifier.smt.encode import Encoding
from verifier.smt.z3_solver import SolveResult


def _blocks(enc: Encoding):
    """(A, lo, hi, integrality, var_lo, var_hi) without the spec rows."""
    n, r = enc.n_vars, enc.relus
    k = len(r.z)
    n_win = sum(len(w.inputs) for w in enc.windows)
    total = n + k + n_win
    rows, lo, hi = [], [], []

    def add(entries, lower, upper):
        i, j, v = (np.asarray(t) for t in zip(*entries)) if entries else ([], [], [])
        m = len(lower)
        rows.append(sp.csr_matrix((v, (i, j)), shape=(m, total)))
        lo.append(np.asarray(lower, float))
        hi.append(np.asarray(upper, float))

    eq = enc.eq_A.tocoo()
    add(list(zip(eq.row, eq.col, eq.data)), enc.eq_b, enc.eq_b)
    a = n + np.arange(k)
    idx = np.arange(k)
    # z - y <= 0 ; y - z - l a <= -l ; y - u a <= 0
    entries = [(i, z, 1.0) for i, z in zip(idx, r.z)] + [(i, y, -1.0) for i, y in zip(idx, r.y)]
    entries += [(k + i, y, 1.0) for i, y in zip(idx, r.y)] + [(k + i, z, -1.0) for i, z in zip(idx, r.z)]
    entries += [(k + i, ai, -l) for i, ai, l in zip(idx, a, r.lower)]
    entries += [(2 * k + i, y, 1.0) for i, y in zip(idx, r.y)] + [(2 * k + i, ai, -u) for i, ai, u in zip(idx, a, r.upper)]
    add(entries, np.full(3 * k, -np.inf), np.concatenate([np.zeros(k), -r.lower, np.zeros(k)]))
    _window_rows(enc, n + k, add)
    var_lo, var_hi = enc.var_lo.copy(), enc.var_hi.copy()
    pos, neg = enc.sign_vars[enc.signs > 0], enc.sign_vars[enc.signs < 0]
    var_lo[pos] = np.maximum(var_lo[pos], 0)
    var_hi[neg] = np.minimum(var_hi[neg], 0)
    integrality = np.concatenate([np.zeros(n), np.ones(k + n_win)])
    bounds_lo = np.concatenate([var_lo, np.zeros(k + n_win)])
    bounds_hi = np.concatenate([var_hi, np.ones(k + n_win)])
    return sp.vstack(rows).tocsr(), np.concatenate(lo), np.concatenate(hi), integrality, bounds_lo, bounds_hi


def _window_rows(enc: Encoding, first_binary: int, add):
    b = first_binary
    for w in enc.windows:
        top = float(np.max(w.upper))
        entries, lower, upper, row = [], [], [], 0
        for x, l in zip(w.inputs, w.lower):
            entries += [(row, w.out, 1.0), (row, x, -1.0)]  # m - x >= 0
            entries += [(row + 1, w.out, 1.0), (row + 1, x, -1.0), (row + 1, b, top - l)]
            lower += [0.0, -np.inf]
            upper += [np.inf, top - l]
            row, b = row + 2, b + 1
        entries += [(row, j, 1.0) for j in range(b - len(w.inputs), b)]
        add(entries, lower + [1.0], upper + [1.0])


def solve_milp(enc: Encoding, thresholds: np.ndarray, timeout_s: float) -> SolveResult:
    from scipy.optimize import Bounds, LinearConstraint, milp

    started = time.monotonic()
    A, lo, hi, integrality, var_lo, var_hi = _blocks(enc)
    total = A.shape[1]
    for k in range(enc.n_disjuncts):
        rows = np.nonzero(enc.owner == k)[0]
        spec = sp.csr_matrix((len(rows), total)).tolil()
        spec[:, enc.outputs] = enc.C[rows]
        remaining = timeout_s - (time.monotonic() - started)
        if remaining <= 0:
            return SolveResult("unknown", reason="MILP timeout", seconds=time.monotonic() - started)
        constraints = [LinearConstraint(A, lo, hi),
                       LinearConstraint(spec.tocsr(), -np.inf, thresholds[rows])]
        res = milp(np.zeros(total), integrality=integrality, bounds=Bounds(var_lo, var_hi),
                   constraints=constraints, options={"time_limit": remaining})
        if res.status == 0 and res.x is not None:
            return SolveResult("sat", res.x[:enc.n_inputs], seconds=time.monotonic() - started)
        if res.status != 2:
            return SolveResult("unknown", reason=f"MILP: {res.message}", seconds=time.monotonic() - started)
    return SolveResult("unsat", seconds=time.monotonic() - started)
