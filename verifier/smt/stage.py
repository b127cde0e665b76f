"""The exact stage: a region, or a BaB subdomain, decided by z3 (or by the MILP sibling).

Decisions, with eps the rows' float margins (verifier.float_error, the rule every stage uses):
- sat only through Query.confirm (onnxruntime and float64 replay) of a solver's model: first
  the model of the query relaxed by eps, then, if that does not replay, of the query
  strengthened by eps;
- unsat only from z3's exact `unsat` of the query relaxed by eps. The MILP's "infeasible"
  is float arithmetic with tolerances, so `backend="milp"` confirms it with z3 on the same
  encoding before it counts (the MILP serves to find counterexamples fast);
- anything else (z3 unknown or timeout, a decline, counterexamples only within the margin)
  is unknown for that domain, with the reason in the note.
Solver time limits follow the query's deadline.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from verifier.smt.encode import Decline, Encoding, encode, round_float32
from verifier.smt.milp import solve_milp
from verifier.smt.z3_solver import SolveResult, solve_z3

SOLVERS = {"z3": solve_z3, "milp": solve_milp}
_NO_MARGIN = 1e30  # an infinite eps: no unsat, and only counterexamples beyond any threshold


@dataclass
class ExactOutcome:
    verdict: str  # "sat", "unsat" or "unknown"
    witness: object = None
    note: str = ""
    unstable: int = 0
    seconds: float = 0.0


def numpy_bounds(bounds: dict) -> dict:
    """node -> (l, u) of batch entry 0 as flat float64 arrays."""
    return {k: (l[0].detach().reshape(-1).cpu().double().numpy(), u[0].detach().reshape(-1).cpu().double().numpy())
            for k, (l, u) in bounds.items()}


def decide_domain(query, region, bounds: dict, C: np.ndarray, d: np.ndarray, owner: np.ndarray,
                  n_disjuncts: int, splits: dict | None = None, backend: str = "z3") -> ExactOutcome:
    """Decide the region's box cut by `splits`; bounds: node -> (l, u) torch tensors, batch 1,
    valid on that domain (every node)."""
    started = time.monotonic()
    graph = query.graph64
    flat_splits = {k: v[0].reshape(-1).cpu().numpy() for k, v in (splits or {}).items()}
    lo, hi = float32_box(region.lo, region.hi) if graph.onnx_input_dtype == "float32" else (region.lo, region.hi)
    try:
        enc = encode(graph, numpy_bounds(bounds), lo, hi, C, d, owner, n_disjuncts, flat_splits)
    except Decline as reason:
        return ExactOutcome("unknown", note=f"smt declined: {reason}")
    eps = np.minimum(query.exact_margins(region, C, d), _NO_MARGIN)  # z3 needs finite thresholds
    outcome = _decide(query, region, enc, eps, backend)
    outcome.unstable = enc.n_unstable
    outcome.seconds = time.monotonic() - started
    return outcome


def float32_box(lo: np.ndarray, hi: np.ndarray):
    """The box rounded inward to float32 values: it holds exactly the float32 inputs of
    [lo, hi], the only inputs the model can receive, so both the unsat argument and the
    counterexamples stay the same, with short rationals. A dimension fixed to a value float32
    cannot hold gets its nearest float32, as in verifier.decide; one with no float32 inside
    keeps its bounds."""
    up, down = round_float32(lo, 1), round_float32(hi, -1)
    fixed = lo == hi
    nearest = lo.astype(np.float32).astype(np.float64)
    empty = up > down
    return (np.where(fixed, nearest, np.where(empty, lo, up)),
            np.where(fixed, nearest, np.where(empty, hi, down)))


def thresholds(d: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """d + shift rounded to float32 away from d (up for a relaxed query, down for a
    strengthened one): any such threshold keeps the margin rule, and short rationals are
    cheap for z3."""
    direction = np.sign(shift)
    return round_float32(np.nextafter(d + shift, direction * np.inf), direction)


def _decide(query, region, enc: Encoding, eps: np.ndarray, backend: str) -> ExactOutcome:
    relaxed = _solve(query, enc, thresholds(enc.d, eps), backend)
    if relaxed.status == "unsat":
        return ExactOutcome("unsat", note=f"{backend} unsat")
    if relaxed.status == "unknown":
        return ExactOutcome("unknown", note=relaxed.reason)
    witness = query.confirm(region, relaxed.x)
    if witness is not None:
        return ExactOutcome("sat", witness, note=f"{backend} model")
    strict = _solve(query, enc, thresholds(enc.d, -eps), backend)
    if strict.status == "sat":
        witness = query.confirm(region, strict.x)
        if witness is not None:
            return ExactOutcome("sat", witness, note=f"{backend} model (strengthened)")
        return ExactOutcome("unknown", note="a model beyond the float margin did not replay")
    if strict.status == "unsat":
        return ExactOutcome("unknown", note="counterexamples only within the float margin")
    return ExactOutcome("unknown", note=strict.reason)


def _solve(query, enc: Encoding, limits: np.ndarray, backend: str) -> SolveResult:
    query.check_time()
    result = SOLVERS[backend](enc, limits, query.deadline - time.monotonic())
    if backend == "milp" and result.status == "unsat":  # HiGHS proposes, z3 proves
        query.check_time()
        result = solve_z3(enc, limits, query.deadline - time.monotonic())
    return result


def smt_region(query, region, backend: str = "milp") -> ExactOutcome:
    """The whole region in one exact query, with CROWN bounds to fix stable neurons."""
    from verifier.boundprop.engine import crown
    from verifier.spec.region import stack_rows

    graph = query.graph64
    lo = torch.as_tensor(region.lo, dtype=torch.float64, device=graph.device).unsqueeze(0)
    hi = torch.as_tensor(region.hi, dtype=torch.float64, device=graph.device).unsqueeze(0)
    state = crown(graph, lo, hi)
    C, d, owner = stack_rows(region)
    query.exact_margins(region, C, d, state.bounds)  # the float error from these root bounds
    return decide_domain(query, region, state.bounds, C, d, owner, len(region.disjuncts), backend=backend)


def smt_stage(query, backend: str = "milp"):
    """--method smt: every region by one exact query (HiGHS proposes, z3 proves unsat);
    sat at the first region with one."""
    notes, verdicts = [], []
    for region in query.regions:
        outcome = smt_region(query, region, backend)
        if outcome.verdict == "sat":
            return query.result("sat", f"smt ({outcome.note})", outcome.witness)
        notes.append(outcome.note)
        verdicts.append(outcome.verdict)
    if all(v == "unsat" for v in verdicts):
        return query.result("unsat", f"smt ({'; '.join(sorted(set(notes)))})")
    query.check_time()  # a solver stopped by the deadline: the run timed out
    return query.result("unknown", "smt: " + "; ".join(n for n, v in zip(notes, verdicts) if v != "unsat"))
