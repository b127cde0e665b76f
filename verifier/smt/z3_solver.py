"""The encoding in z3's linear real arithmetic, decided exactly.

Every number enters z3 as the exact rational value of its float64 (`fractions.Fraction`), so
z3's answer is about the real-valued network with the model's weights; thresholds are shifted
by the margin rule's eps and rounded to short float32 values in the safe direction (see
verifier.smt.stage). Each unstable ReLU is a Bool
phase a with a => (y = z, z >= 0), not a => (y = 0, z <= 0), plus y >= 0, y >= z and the
triangle cut (u - l) y <= u (z - l), which the widened bounds make valid; each open MaxPool
window is m >= every input and m = one of them. z3's unknown (timeout, memory) is unknown.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from verifier.smt.encode import Encoding

_MEMORY_MB = 2048
_TRIANGLE = True


@dataclass
class SolveResult:
    status: str  # "sat", "unsat" or "unknown"
    x: np.ndarray | None = None  # input point of a sat model (float64)
    reason: str = ""
    seconds: float = 0.0


class _Rationals:
    """float -> z3 RealVal of its exact value, cached."""

    def __init__(self, z3):
        self.z3 = z3
        self.cache: dict[float, object] = {}

    def __call__(self, value) -> object:
        value = float(value)
        if value not in self.cache:
            f = Fraction(value)
            self.cache[value] = self.z3.Q(f.numerator, f.denominator)
        return self.cache[value]


def build(enc: Encoding, thresholds: np.ndarray):
    """(z3 solver, input variables) asserting the encoding and the spec C y <= thresholds."""
    import z3

    z3.set_param("memory_max_size", _MEMORY_MB)
    q = _Rationals(z3)
    solver = z3.SolverFor("QF_LRA")
    v = [z3.Real(f"v{i}") for i in range(enc.n_vars)]
    for i in range(enc.n_vars):
        if np.isfinite(enc.var_lo[i]):
            solver.add(v[i] >= q(enc.var_lo[i]))
        if np.isfinite(enc.var_hi[i]):
            solver.add(v[i] <= q(enc.var_hi[i]))
    A = enc.eq_A
    for r in range(A.shape[0]):
        cols, vals = A.indices[A.indptr[r]:A.indptr[r + 1]], A.data[A.indptr[r]:A.indptr[r + 1]]
        solver.add(_linear(z3, q, v, cols, vals) == q(enc.eq_b[r]))
    for var, sign in zip(enc.sign_vars, enc.signs):
        solver.add(v[var] >= 0 if sign > 0 else v[var] <= 0)
    _add_relus(z3, q, solver, v, enc)
    for w in enc.windows:
        solver.add(*[v[w.out] >= v[i] for i in w.inputs])
        solver.add(z3.Or([v[w.out] == v[i] for i in w.inputs]))
    solver.add(_spec(z3, q, v, enc, thresholds))
    return solver, v[:enc.n_inputs]


def _linear(z3, q, v, cols, vals):
    return z3.Sum([q(a) * v[j] for j, a in zip(cols, vals)]) if len(cols) else q(0.0)


def _add_relus(z3, q, solver, v, enc: Encoding):
    r = enc.relus
    for j, (z, y, l, u) in enumerate(zip(r.z, r.y, r.lower, r.upper)):
        a = z3.Bool(f"a{j}")
        z_, y_ = v[z], v[y]
        solver.add(z3.Implies(a, z3.And(y_ == z_, z_ >= 0)),
                   z3.Implies(z3.Not(a), z3.And(y_ == 0, z_ <= 0)),
                   y_ >= z_, y_ >= 0,
                   *([(q(u) - q(l)) * y_ <= q(u) * (z_ - q(l))] if _TRIANGLE else []))


def _spec(z3, q, v, enc: Encoding, thresholds: np.ndarray):
    outputs = [v[i] for i in enc.outputs]
    disjuncts = []
    for k in range(enc.n_disjuncts):
        rows = []
        for i in np.nonzero(enc.owner == k)[0]:
            cols = np.nonzero(enc.C[i])[0]
            lhs = _linear(z3, q, outputs, cols, enc.C[i, cols])
            rows.append(lhs <= q(thresholds[i]))
        disjuncts.append(z3.And(rows))
    return z3.Or(disjuncts)


def solve_z3(enc: Encoding, thresholds: np.ndarray, timeout_s: float) -> SolveResult:
    import z3

    started = time.monotonic()
    solver, inputs = build(enc, thresholds)
    remaining = timeout_s - (time.monotonic() - started)
    if remaining <= 0:
        return SolveResult("unknown", reason="z3 timeout while encoding", seconds=time.monotonic() - started)
    solver.set("timeout", max(1, int(remaining * 1000)))
    answer = solver.check()
    seconds = time.monotonic() - started
    if answer == z3.unsat:
        return SolveResult("unsat", seconds=seconds)
    if answer == z3.sat:
        model = solver.model()
        x = np.array([float(model.eval(xi, model_completion=True).as_fraction()) for xi in inputs])
        return SolveResult("sat", x, seconds=seconds)
    return SolveResult("unknown", reason=f"z3: {solver.reason_unknown()}", seconds=seconds)
