"""The strategy: cheapest stages first, stop at the first verdict.

attack (quick) -> CROWN -> attack (neuron-targeted, then full) -> branch and bound on each region still open (input
splitting or ReLU splitting with alpha/beta-CROWN, chosen from the problem's shape). Later
stages (SDP, SMT) plug in beside branch and bound. Every stage only proposes: sat goes through
Query.confirm, unsat through Query.refuted.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from verifier.attack.pgd import pgd_candidates
from verifier.bab.input_split import boxes_per_round
from verifier.boundprop.engine import crown, output_lower_bounds
from verifier.boundprop.optimize import Spec
from verifier.decide import confirm_counterexample, refuted_disjuncts
from verifier.float_error import decision_floor, missing_error_rules, output_error, row_margins
from verifier.graph.composite import without_softmax_head
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
        self.progress = "start"  # the stage running (with its tree size): a timeout's stage
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
# Neuron-targeted PGD (verifier.attack.targeted) before the full attack (it costs a fraction of it,
# and its runs are guided by the CROWN bounds just computed): this many targets, runs
# of this many steps, within this many multiply-adds in all (on the soundness set's 75-input
# conv nets, 8 targets x 13 runs; found most counterexamples hidden behind inactive or
# saturated units there within 300 steps).
_TARGETS = 8
_TARGETED_STEPS = 300
_TARGETED_BUDGET = 5e8
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
        result = query.result("timeout", f"deadline in {query.progress}")
    if query.notes and result.verdict in ("unknown", "timeout"):  # why it could not prove
        result.stage = "; ".join([result.stage, *dict.fromkeys(query.notes)])
    return result


def _stages(query: Query) -> Result:
    opts = query.options
    if opts.method == "smt":  # the exact stage alone (HiGHS proposes, z3 proves), nothing before it
        from verifier.smt.stage import smt_stage

        query.progress = "smt"
        return smt_stage(query)
    unrelaxed = no_relaxation(query.graph64)
    if unrelaxed is not None:
        return _attacks_only(query, unrelaxed)
    outcome = _attacks_and_crown(query)
    if isinstance(outcome, Result):
        return outcome
    return _branch_and_bound_all(query, open_regions=outcome)


# Specs with more input regions than this (nn4sys lindex: 3,000 boxes) are bounded by CROWN
# first, many boxes in one batch, and attacked only where CROWN leaves them open: a short
# attack on each region would cost more than the timeout there.
_MANY_REGIONS = 64


def _attacks_and_crown(query: Query) -> Result | list[Region]:
    """A verdict, or the regions plain CROWN leaves open (no counterexample found)."""
    opts = query.options
    many = len(query.regions) > _MANY_REGIONS
    if not many:
        query.progress = "attack"
        with attack_threads(query):
            for region in query.regions:
                witness = attack(query, region, restarts=min(16, opts.attack_restarts),
                                 steps=min(30, opts.attack_steps), pool_budget=_POOL_BUDGET / 10,
                                 pgd_budget=_PGD_BUDGET / 5)
                if witness is not None:
                    return query.result("sat", "attack", witness)
    query.progress = "crown"
    # the regions CROWN leaves open, with their CROWN bounds, which guide the targeted attack
    if many:
        open_regions = crown_open_regions(query, query.regions)
    else:
        open_regions = []
        for region in query.regions:
            state = crown_state(query, region)
            if not crown_proves(query, region, state):
                open_regions.append((region, state))
    if not open_regions:
        return query.result("unsat", "crown")
    query.progress = "attack"
    with attack_threads(query):
        for i, (region, state) in enumerate(open_regions):
            witness = targeted_attack(query, region, state, seed=opts.seed + 1 + i)
            if witness is None:
                witness = attack(query, region, opts.attack_restarts, opts.attack_steps, seed=opts.seed + 1 + i)
            if witness is not None:
                return query.result("sat", "attack", witness)
    return [region for region, _ in open_regions]


def no_relaxation(graph) -> str | None:
    """Why no bound can help on this graph (its first op with no useful relaxation), or None."""
    from verifier.ops import RULES

    for node in graph.nodes:
        if RULES[node.op].no_relaxation:
            what = node.attrs.get("onnx_op", node.op)
            return f"no relaxation for {what} (node '{node.onnx_name or node.name}')"
    return None


# Attack rounds on a network no bound can help with: a quick attack, a grid along the inputs
# that reach the output only through steps (verifier/attack/grid.py) with up to this many
# multiply-adds (cctsdb_yolo: 4,200 points of a 2-D grid, every integer position of its patch),
# then full attacks with fresh seeds while the time allows, up to _ATTACK_ROUNDS.
_GRID_BUDGET = 1e10
_GRID_POINTS = 16384
_ATTACK_ROUNDS = 8


def _attacks_only(query: Query, reason: str) -> Result:
    """Falsification alone: gradient attacks where some free input has a gradient, a grid along
    those that have none (step inputs); unknown, naming the op, if nothing is found."""
    from verifier.attack.grid import step_coordinates

    opts = query.options
    steps = {id(r): step_coordinates(query.graph32, r, opts.seed) for r in query.regions}
    with attack_threads(query):
        for region in query.regions:
            witness = None
            if len(steps[id(region)]) < np.count_nonzero(region.hi > region.lo):
                witness = attack(query, region, restarts=min(16, opts.attack_restarts),
                                 steps=min(30, opts.attack_steps), pool_budget=_POOL_BUDGET / 10,
                                 pgd_budget=_PGD_BUDGET / 5)
            witness = witness if witness is not None else grid_attack(query, region, steps[id(region)])
            if witness is not None:
                return query.result("sat", "attack", witness)
        for round_ in range(_ATTACK_ROUNDS):
            for i, region in enumerate(query.regions):
                seed = opts.seed + 1 + round_ * len(query.regions) + i
                if len(steps[id(region)]) < np.count_nonzero(region.hi > region.lo):
                    witness = attack(query, region, opts.attack_restarts, opts.attack_steps, seed=seed)
                else:  # gradients move nothing: random points only
                    witness = grid_attack(query, region, steps[id(region)], seed=seed, random=True)
                if witness is not None:
                    return query.result("sat", "attack", witness)
    return query.result("unknown", f"attacks only: {reason}")


def grid_attack(query: Query, region: Region, coordinates: np.ndarray, seed: int | None = None,
                random: bool = False):
    """A grid over the free inputs that gradients cannot move (`coordinates`; none: no search),
    or with `random` as many random points of the box."""
    from verifier.attack.grid import grid_candidates, grid_size

    graph = query.graph32
    seed = query.options.seed if seed is None else seed
    points = int(min(_GRID_POINTS, _GRID_BUDGET / graph.multiply_adds()))
    per_axis = grid_size(len(coordinates), points)
    if per_axis == 0:
        return None
    search = grid_candidates(graph, region, coordinates[:0] if random else coordinates, per_axis, query.deadline,
                             seed, points=per_axis ** len(coordinates) if random else None)
    return _first_confirmed(query, region, search)


def attack_threads(query: Query):
    """One thread for the attacks on small networks (see _SMALL_MODEL), every thread otherwise."""
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

    query.progress = "sdp"
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
    return _first_confirmed(query, region, pgd_candidates(_attack_graph(query, region), region, restarts, steps,
                                                          query.deadline, seed, pool))


def _first_confirmed(query: Query, region: Region, batches):
    """The first candidate (of the first 8 in each batch) that onnxruntime confirms, or None."""
    for candidates in batches:
        for x in candidates[:8]:
            witness = query.confirm(region, x)
            if witness is not None:
                return witness
    query.check_time()
    return None


def _attack_graph(query: Query, region: Region):
    """The network, or its logits when it ends in a softmax and every spec row compares two
    outputs (c y_i - c y_j <= 0): the same counterexamples, and gradients that do not vanish
    where the softmax saturates (traffic_signs' logits differ by thousands)."""
    logits = without_softmax_head(query.graph32)
    if logits is None or not all(_compares_two_outputs(dj.C, dj.d) for dj in region.disjuncts):
        return query.graph32
    return logits


def _compares_two_outputs(C: np.ndarray, d: np.ndarray) -> bool:
    nonzero = C != 0
    return bool((d == 0).all() and (nonzero.sum(1) == 2).all() and (C.sum(1) == 0).all())


def crown_state(query: Query, region: Region):
    """Plain CROWN in float64 on the region's box."""
    query.check_time()
    graph = query.graph64
    lo = torch.as_tensor(region.lo, dtype=torch.float64, device=graph.device).unsqueeze(0)
    hi = torch.as_tensor(region.hi, dtype=torch.float64, device=graph.device).unsqueeze(0)
    state = crown(graph, lo, hi, deadline_check=query.check_time)
    query.check_time()
    return state


def targeted_attack(query: Query, region: Region, state, seed: int):
    """Neuron-targeted PGD (verifier.attack.targeted) on the units CROWN's relaxation (`state`)
    says could lower the margin most, within _TARGETED_BUDGET multiply-adds."""
    from verifier.attack.targeted import choose_targets, targeted_candidates
    from verifier.spec.region import stack_rows

    restarts = int(_TARGETED_BUDGET / (_TARGETED_STEPS * query.graph32.multiply_adds()))
    if restarts < 1:  # a network this large gets no targeted runs
        return None
    C, _, owner = stack_rows(region)
    targets = choose_targets(query.graph32, state, torch.as_tensor(C), torch.as_tensor(owner),
                             min(_TARGETS, restarts))
    if targets is None:
        return None
    per_target = max(1, restarts // len(targets))
    return _first_confirmed(query, region, targeted_candidates(query.graph32, region, targets, per_target,
                                                               _TARGETED_STEPS, query.deadline, seed))


def crown_open_regions(query: Query, regions: list[Region]) -> list[tuple[Region, object]]:
    """The regions plain CROWN does not refute, with their bound states: the boxes of many
    regions bounded together, as many a batch as input splitting's rounds hold."""
    graph = query.graph64
    per_batch = boxes_per_round(graph, crown, query.spec(regions[0]), 1024)
    open_regions = []
    for start in range(0, len(regions), per_batch):
        batch = regions[start:start + per_batch]
        lo, hi = (torch.as_tensor(np.stack([getattr(r, side) for r in batch]), dtype=torch.float64,
                                  device=graph.device) for side in ("lo", "hi"))
        state = crown(graph, lo, hi, deadline_check=query.check_time)
        specs = [query.spec(region) for region in batch]
        C = lo.new_zeros(len(batch), max(len(spec.d) for spec in specs), graph.output_size)
        for i, spec in enumerate(specs):
            C[i, :len(spec.d)] = spec.C
        lower = output_lower_bounds(state, C)
        for i, (region, spec) in enumerate(zip(batch, specs)):
            if not _refutes(query, region, spec, lower[i:i + 1, :len(spec.d)]):
                open_regions.append((region, state.select(torch.tensor([i], device=lo.device))))
        query.check_time()
    return open_regions


def crown_proves(query: Query, region: Region, state) -> bool:
    """CROWN's bounds (`state`, from crown_state) refute every disjunct of the region."""
    spec = query.spec(region)
    return _refutes(query, region, spec, output_lower_bounds(state, spec.C.unsqueeze(0)))


def _refutes(query: Query, region: Region, spec: Spec, lower: torch.Tensor) -> bool:
    """Plain CROWN's lower bounds (1, m) of the spec rows refute every disjunct (recorded for a
    certificate when they do)."""
    proved = bool(query.refuted(lower, spec).all())
    if proved and query.recorder is not None:
        query.recorder.crown_region(region, spec)
    return proved
