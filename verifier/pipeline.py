"""The strategy: cheapest stages first, stop at the first verdict.

attack (quick) -> CROWN -> attack (full) -> branch and bound on each region still open (input
splitting or ReLU splitting with alpha/beta-CROWN, chosen from the problem's shape). Later
stages (SDP, SMT) plug in beside branch and bound. Every stage only proposes: sat goes through
Query.confirm, unsat through Query.refuted.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from verifier.attack.pgd import pgd_candidates
from verifier.boundprop.engine import crown, output_lower_bounds
from verifier.boundprop.optimize import Spec
from verifier.decide import confirm_counterexample, refuted_disjuncts
from verifier.float_error import decision_floor, missing_error_rules, output_error, row_margins
from verifier.options import Options
from verifier.result import Result
from verifier.runtime import exact_float_settings, keep_freed_memory, threads
from verifier.spec.region import Region, stack_rows


class Deadline(Exception):
    """Raised inside a stage when the time budget is spent."""


class Query:
    """One verification query: the model in both precisions, the regions, the clock."""

    def __init__(self, graph, regions: list[Region], runner, options: Options, started: float):
        device = options.resolved_device()
        self.graph32 = graph.to(torch.float32, device)
        self.graph64 = graph.to(torch.float64, device)
        self.regions = regions
        self.runner = runner
        self.options = options
        self.started = started
        self.deadline = started + options.timeout
        self._float_errors: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self.notes: list[str] = []  # lines for stderr (e.g. why no unsat is possible)
        self.recorder = None  # a certify.Recorder when an unsat certificate is asked for
        self.missing_error_rules = missing_error_rules(self.graph64)
        if self.missing_error_rules:
            self.notes.append("no unsat possible: no float32 error rule for "
                              + ", ".join(self.missing_error_rules))

    def check_time(self):
        if time.monotonic() > self.deadline:
            raise Deadline()

    def confirm(self, region: Region, x: np.ndarray):
        """The only way to a sat verdict: x, as float32 inside the box, violates in onnxruntime."""
        return confirm_counterexample(self.runner, region, x)

    def refuted(self, lower: torch.Tensor, spec: Spec) -> torch.Tensor:
        """(B, K): the only way to unsat: float64 lower bounds beating each disjunct's
        thresholds by the float margins."""
        return refuted_disjuncts(lower, spec.d, spec.eps, spec.owner, spec.n_disjuncts)

    def spec(self, region: Region, exact: bool = False) -> Spec:
        """The region's stacked rows with the float margins unsat needs: for bounds from bound
        propagation (which charge float32 rounding) the float64 floor; with `exact`, for
        bounds of the real-valued network alone (the SDP), the float32 error too."""
        C, d, owner = stack_rows(region)
        device = self.graph64.device
        eps = self.exact_margins(region, C, d) if exact else decision_floor(d)
        if self.missing_error_rules:
            eps = np.full_like(d, np.inf)
        return Spec(torch.as_tensor(C, device=device), torch.as_tensor(d, device=device),
                    torch.as_tensor(owner, device=device), len(region.disjuncts),
                    torch.as_tensor(eps, device=device))

    def exact_margins(self, region: Region, C: np.ndarray, d: np.ndarray, root_bounds: dict | None = None) -> np.ndarray:
        """eps per row for a decision about the real-valued network (z3, the SDP): the float32
        error bound of the region's box (verifier.float_error.output_error) from root bounds
        (CROWN's, computed here unless given), once per box; valid for every sub-box and split."""
        key = region.lo.tobytes() + region.hi.tobytes()
        if key not in self._float_errors:
            if root_bounds is None:
                root_bounds = self._root_crown(region).bounds
            self._float_errors[key] = output_error(self.graph64, region.lo, region.hi, root_bounds)
        eps = row_margins(*self._float_errors[key], C, d)
        return np.full_like(eps, np.inf) if self.missing_error_rules else eps

    def _root_crown(self, region: Region):
        graph = self.graph64
        lo = torch.as_tensor(region.lo, dtype=torch.float64, device=graph.device).unsqueeze(0)
        hi = torch.as_tensor(region.hi, dtype=torch.float64, device=graph.device).unsqueeze(0)
        return crown(graph, lo, hi, deadline_check=self.check_time)

    def result(self, verdict: str, stage: str, witness=None) -> Result:
        return Result(verdict, witness, time.monotonic() - self.started, stage)


# Below this many multiply-adds per sample, one CPU thread beats two (no sync overhead) in the
# attacks, which run a few hundred to a few thousand points through the network. Bound
# computations keep every thread, even on small networks: root CROWN carries a row per neuron
# it bounds (verivital's maxpool net: 6.5 s on two threads, 9-11 s on one; ACAS Xu: equal),
# and branch and bound's batches are large (a CROWN pass over 2,048 boxes: 1.4 to 1.7 times
# faster on two threads; ACAS Xu 3_3 prop_2: 20.4 s on one thread, 14.4 s on two).
_SMALL_MODEL = 2_000_000
# Multiply-adds spent on scoring random points before PGD, and on PGD restarts (times steps),
# in the full attack; the quick one spends a tenth and a fifth. Small models get many restarts:
# on ACAS Xu, thousands of uniform restarts find narrow counterexamples that pool-seeded starts
# miss.
_POOL_BUDGET = 1e9
_PGD_BUDGET = 2e9
_MAX_RESTARTS = 8192
# Where the budget buys more restarts than asked for, runs are cut to this many steps: many short
# runs find more than a few long ones, for the same time (a batch of 8,192 points costs little
# more per step than one of 300). ACAS Xu 1_9 prop_7: 16 of 20 seeds find its counterexample
# with 8,192 runs of 20 steps, 1 of 20 with 300 runs of 100.
_SHORT_STEPS = 20


def run(query: Query) -> Result:
    keep_freed_memory()
    try:
        with exact_float_settings():
            result = _stages(query)
    except Deadline:
        result = query.result("timeout", "deadline")
    if query.notes:
        result.stage = "; ".join([result.stage, *dict.fromkeys(query.notes)])
    return result


def _stages(query: Query) -> Result:
    opts = query.options
    if opts.method == "smt":  # the exact stage alone (HiGHS proposes, z3 proves), nothing before it
        from verifier.smt.stage import smt_stage
        return smt_stage(query)
    outcome = _attacks_and_crown(query)
    if isinstance(outcome, Result):
        return outcome
    return _branch_and_bound_all(query, open_regions=outcome)


def _attacks_and_crown(query: Query) -> Result | list[Region]:
    """A verdict, or the regions plain CROWN leaves open (no counterexample found)."""
    opts = query.options
    with _attack_threads(query):
        for region in query.regions:
            witness = attack(query, region, restarts=min(16, opts.attack_restarts),
                             steps=min(30, opts.attack_steps), pool_budget=_POOL_BUDGET / 10,
                             pgd_budget=_PGD_BUDGET / 5)
            if witness is not None:
                return query.result("sat", "attack", witness)
    open_regions = [r for r in query.regions if not crown_proves(query, r)]
    if not open_regions:
        return query.result("unsat", "crown")
    with _attack_threads(query):
        for i, region in enumerate(open_regions):
            witness = attack(query, region, opts.attack_restarts, opts.attack_steps, seed=opts.seed + 1 + i)
            if witness is not None:
                return query.result("sat", "attack", witness)
    return open_regions


def _attack_threads(query: Query):
    small = query.graph32.multiply_adds() < _SMALL_MODEL
    return threads(1 if small else torch.get_num_threads())


def _branch_and_bound_all(query: Query, open_regions: list[Region]) -> Result:
    notes, verdicts = [], []
    for region in open_regions:
        outcome = branch_and_bound(query, region)
        if outcome.verdict == "sat":
            return query.result("sat", outcome.note, outcome.witness)
        notes.append(outcome.note)
        verdicts.append(outcome.verdict)
    verdict = "unsat" if all(v == "unsat" for v in verdicts) else "unknown"
    return query.result(verdict, "; ".join(notes))


# Inputs up to this dimension are split directly (ACAS Xu has 5).
_INPUT_SPLIT_MAX_DIM = 20


def branch_and_bound(query: Query, region: Region):
    from verifier.bab.input_split import input_split_bab

    spec = query.spec(region)
    if _split_kind(query, region) == "input":
        outcome = input_split_bab(query, region, spec)
        outcome.note = outcome.note or f"input split ({outcome.domains} boxes)"
        return outcome
    from verifier.bab.common import BabOutcome
    from verifier.bab.relu_split import relu_split_bab
    from verifier.sdp.stage import sdp_stage

    sdp_note = ""
    if query.recorder is None:  # the SDP's certificates are not part of unsat certificates
        region, sdp_note = sdp_stage(query, region)  # low-rank SDP first, under a small budget
    if region is None:
        return BabOutcome("unsat", None, 0, sdp_note)
    spec = query.spec(region)
    outcome = relu_split_bab(query, region, spec)
    outcome.note = outcome.note or f"relu split ({outcome.domains} domains)"
    outcome.note = f"{sdp_note}; {outcome.note}" if sdp_note else outcome.note
    return outcome


def _split_kind(query: Query, region: Region) -> str:
    """Input splitting for few free inputs (those with hi > lo) or smooth activations, ReLU
    splitting otherwise."""
    if query.options.split != "auto":
        return query.options.split
    piecewise_linear = all(n.op not in ("sigmoid", "tanh") for n in query.graph64.nodes)
    free_inputs = int(np.count_nonzero(region.hi > region.lo))
    return "input" if free_inputs <= _INPUT_SPLIT_MAX_DIM or not piecewise_linear else "relu"


def attack(query: Query, region: Region, restarts: int, steps: int, seed: int | None = None,
           pool_budget: float = _POOL_BUDGET, pgd_budget: float = _PGD_BUDGET):
    seed = query.options.seed if seed is None else seed
    cost = query.graph32.multiply_adds()
    pool = int(min(100_000, pool_budget / cost))
    if pgd_budget / (steps * cost) > restarts:
        steps = min(steps, _SHORT_STEPS)
    restarts = max(restarts, int(min(_MAX_RESTARTS, pgd_budget / (steps * cost))))
    for candidates in pgd_candidates(query.graph32, region, restarts, steps, query.deadline, seed, pool):
        for x in candidates[:8]:
            witness = query.confirm(region, x)
            if witness is not None:
                return witness
    query.check_time()
    return None


def crown_proves(query: Query, region: Region) -> bool:
    """Plain CROWN in float64 refutes every disjunct of the region."""
    query.check_time()
    graph = query.graph64
    lo = torch.as_tensor(region.lo, dtype=torch.float64, device=graph.device).unsqueeze(0)
    hi = torch.as_tensor(region.hi, dtype=torch.float64, device=graph.device).unsqueeze(0)
    state = crown(graph, lo, hi, deadline_check=query.check_time)
    query.check_time()
    spec = query.spec(region)
    lower = output_lower_bounds(state, spec.C.unsqueeze(0))
    proved = bool(query.refuted(lower, spec).all())
    if proved and query.recorder is not None:
        query.recorder.crown_region(region, spec)
    return proved
