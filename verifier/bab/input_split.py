"""Branch and bound on the input box, for low-dimensional inputs.

Each round takes the open boxes with the worst bounds, halves each along the dimension with
the largest (width x |linear-bound coefficient|) score, and bounds all halves at once. Boxes whose disjuncts are all refuted (decided in float64) are closed; for the rest,
the minimisers of their linear bounds and their centres are tried as counterexamples.
"""
from __future__ import annotations

import torch

from verifier.attack.pgd import box_pgd_candidates
from verifier.bab.common import BabOutcome, try_counterexamples
from verifier.boundprop.engine import (BoundState, crown, crown_multiply_adds, needs_tight_bounds,
                                       output_lower_bounds, parameter_nodes)
from verifier.boundprop.forward import forward_bounds, forward_multiply_adds
from verifier.boundprop.optimize import Spec, optimize_bounds
from verifier.certify.recorder import box_proof


_FORWARD_SLACK = 0.1  # relative loss of root margin accepted for forward-mode bounds
# Forward mode's tree was 5 to 50 times CROWN's on 2-input networks (tllverifybench), and a
# hundred times on ACAS Xu; take its looser bounds only where CROWN costs a box this many times
# more multiply-adds (counted by the cost model below, never timed: a timing probe sent runs to
# forward mode whenever the machine hiccuped). Model ratios on 16 probe boxes (the root alone for
# N=24, whose root pass passes the probe's budget), beside the per-box time ratios that the old
# probe measured on the idle 2-core CPU (on a busy one they ranged from 0.6 to 430 on ACAS Xu):
#   ACAS Xu (5 inputs, 6x50), all 26 rows:    2-30       time ~10     CROWN (forward: ~100x the tree)
#   tllverifybench N=8 (2 inputs):            19-24      time ~4      CROWN
#   tllverifybench N=24 (2 inputs):           520-540    time ~150    forward (runs 11-16 s -> 3-5 s)
_FORWARD_COST_RATIO = 80
# ...or this many times more where forward mode loses little against CROWN at the root: its tree
# is then hardly larger (vdp_0: 6,497 boxes against 6,471; gcas_3: 87 against 85; lunarlander
# safe_12: 41 both) and the runs faster (busy machine: 14 s against 30, 3.3 against 6.1, 3.5
# against 8.5; model ratios 8.8, 2.3, 3.9)
_FORWARD_COST_RATIO_CLOSE = 2
_PROBE_BOXES = 16  # boxes tiling the root whose unstable neurons estimate CROWN's rows per box
_PROBE_MULTIPLY_ADDS = 2e8  # the most the probe may cost (by the model); else the root stands in
_PGD_BOXES = 64  # boxes attacked by PGD per round
_PGD_STEPS = 10
# alpha-CROWN on the boxes CROWN leaves open, once the tree is this large (easy instances are
# faster without). Ten steps at a high rate close about 40% of ACAS Xu 3_3 prop_2's worst
# boxes for half the cost of a CROWN pass; five steps at 0.1 close none of them.
_ALPHA_STEPS = 10
_ALPHA_LR = 0.5
_ALPHA_AFTER_BOXES = 5_000
# The most linear-function elements a round's boxes may hold over all nodes (1 GB in float64;
# cgan's rounds peaked at about 10 times that, with the bounds, relaxations and temporaries).
ROUND_ELEMENTS = 2 ** 27


def bound_boxes(graph, lo, hi, spec: Spec, intermediate=crown, known: dict | None = None,
                deadline_check=None):
    """Lower bounds (N, m) of the spec rows, their input coefficients (N, m, n) and the bound
    state: the given intermediate bounds, then a backward pass from the output. `known`
    holds bounds already proved for these boxes (their parents'): CROWN keeps the tighter of
    the two and needs no backward pass for neurons the parent already proved stable."""
    if intermediate is crown:
        state = BoundState(graph, lo, hi)
        state.bounds.update(known or {})
        state = crown(graph, lo, hi, state=state, deadline_check=deadline_check)
    else:
        state = intermediate(graph, lo, hi, deadline_check=deadline_check)
    record = {graph.input_name: None}
    lower = output_lower_bounds(state, spec.C.expand(len(lo), -1, -1), record)
    return lower, _input_coefficients(record[graph.input_name], lower, lo.shape[1]), state


def _input_coefficients(lam, lower, n_inputs: int):
    """lam as (N, m, n), zeros when no path reached the input."""
    if lam is None:
        return lower.new_zeros(*lower.shape, n_inputs)
    return lam.detach().flatten(2)


def optimize_open_boxes(query, spec: Spec, state, lower, lam, refuted, steps: int = _ALPHA_STEPS):
    """alpha-CROWN on the output rows of the boxes that CROWN left open (the intermediate
    bounds stay): a few Adam steps cost far less than the tree they save on hard instances.
    Returns the improved (lower, lam, refuted)."""
    open_boxes = (~refuted.all(1)).nonzero().flatten()
    if len(open_boxes) == 0 or not parameter_nodes(state.graph):
        return lower, lam, refuted
    sub = state.select(open_boxes)
    record = {state.graph.input_name: None}
    better, alphas, _ = optimize_bounds(sub, spec, steps, lr_alpha=_ALPHA_LR, record=record)
    if query.recorder is not None:
        query.recorder.box_slopes(sub, open_boxes, alphas)
    lower, lam = lower.clone(), lam.clone()
    lower[open_boxes] = torch.maximum(lower[open_boxes], better)
    lam[open_boxes] = _input_coefficients(record[state.graph.input_name], better, lam.shape[2])
    return lower, lam, query.refuted(lower, spec)


def choose_intermediate_bounds(graph, lo, hi, spec: Spec, deadline_check=None):
    """Forward-mode intermediate bounds cost O(n_in) per neuron instead of a backward pass
    per neuron, but can be much looser (on ACAS Xu the tree grows a hundredfold). Take them
    when, at the root, they lose little against CROWN and save much, or when a box costs them
    so much less than CROWN that a much larger tree is still cheaper (tllverifybench's N=24
    networks: trees 5 to 30 times larger, runs 3 times faster). Costs are counted, not timed,
    so a run takes the same path on an idle machine and on a loaded one."""
    crown_lower, _, root_state = bound_boxes(graph, lo, hi, spec, crown, deadline_check=deadline_check)
    crown_margin = spec.disjunct_margins(crown_lower).min()
    forward_lower = bound_boxes(graph, lo, hi, spec, forward_bounds, deadline_check=deadline_check)[0]
    forward_margin = spec.disjunct_margins(forward_lower).min()
    ratio = _crown_cost_per_box(graph, lo, hi, spec, root_state, deadline_check) / forward_multiply_adds(graph)
    close = forward_margin >= crown_margin - _FORWARD_SLACK * crown_margin.abs()
    return forward_bounds if ratio > (_FORWARD_COST_RATIO_CLOSE if close else _FORWARD_COST_RATIO) else crown


def _crown_cost_per_box(graph, lo, hi, spec: Spec, root_state: BoundState, deadline_check=None) -> float:
    """CROWN's multiply-adds per box, from the unstable neurons of boxes tiling the root (the
    root alone overrates the tree's boxes, most of whose neurons are stable), or of the root
    where such a probe would cost more than _PROBE_MULTIPLY_ADDS."""
    rows = spec.C.shape[-2]
    root_cost = crown_multiply_adds(root_state, rows)
    count = min(_PROBE_BOXES, int(_PROBE_MULTIPLY_ADDS // root_cost))
    if count < 2:
        return root_cost
    return crown_multiply_adds(crown(graph, *_grid_halves(lo, hi, count), deadline_check=deadline_check), rows)


def _grid_halves(lo, hi, count: int):
    """About `count` boxes tiling the box: halves along each free dimension in turn."""
    free = (hi[0] > lo[0]).nonzero().flatten()
    k = 0
    while len(lo) < count and len(free):
        lo, hi = bisect(lo, hi, free[k % len(free)].expand(len(lo)))
        k += 1
    return lo, hi


def split_scores(lam, lo, hi, open_rows):
    """(N, n): how much each dimension's width costs the rows that are still open."""
    weight = open_rows.to(lam.dtype).unsqueeze(-1)
    return ((lam.abs() * weight).sum(1)) * (hi - lo)


def bisect(lo, hi, dims):
    """Two halves of each box along dims (N,): (2N, n) lows and highs."""
    rows = torch.arange(len(lo), device=lo.device)
    mid = (lo[rows, dims] + hi[rows, dims]) / 2
    left_hi, right_lo = hi.clone(), lo.clone()
    left_hi[rows, dims] = mid
    right_lo[rows, dims] = mid
    return torch.cat([lo, right_lo]), torch.cat([left_hi, hi])


def input_split_bab(query, region, spec: Spec, batch: int = 1024) -> BabOutcome:
    graph = query.graph64
    lo = torch.as_tensor(region.lo, dtype=torch.float64, device=graph.device).unsqueeze(0)
    hi = torch.as_tensor(region.hi, dtype=torch.float64, device=graph.device).unsqueeze(0)
    queue = _Queue(lo[:0], hi[:0], lo.new_zeros(0), lo.new_zeros(0, dtype=torch.long))
    pending_lo, pending_hi, pending_bounds = lo, hi, None
    boxes_bounded = 0
    query.progress = "input split (choosing intermediate bounds)"
    intermediate = choose_intermediate_bounds(graph, lo, hi, spec, query.check_time)
    batch = boxes_per_round(graph, intermediate, spec, batch)
    # the bounds a box passes on to its halves (forward-mode intermediate bounds ignore them)
    tight = needs_tight_bounds(graph) if intermediate is crown else {}
    proof = box_proof(query, region, spec, "crown" if intermediate is crown else "forward")
    while True:
        query.check_time()
        lower, lam, state = bound_boxes(graph, pending_lo, pending_hi, spec, intermediate, pending_bounds,
                                        query.check_time)
        boxes_bounded += len(pending_lo)
        query.progress = f"input split ({boxes_bounded} boxes)"
        refuted = query.refuted(lower, spec)
        if boxes_bounded > _ALPHA_AFTER_BOXES:
            lower, lam, refuted = optimize_open_boxes(query, spec, state, lower, lam, refuted)
        if proof is not None:
            proof.round_closed(spec, pending_lo, pending_hi, lower, refuted, state)
        still_open = ~refuted.all(1)
        worst = spec.disjunct_margins(lower).masked_fill(refuted, float("inf")).min(1).values
        if still_open.any():
            witness = _attack_boxes(query, region, pending_lo[still_open], pending_hi[still_open],
                                    lam[still_open], worst[still_open])
            if witness is not None:
                return BabOutcome("sat", witness, boxes_bounded)
        dims = split_scores(lam, pending_lo, pending_hi, ~refuted[:, spec.owner]).argmax(1)
        kept = {k: (l[still_open], u[still_open]) for k, (l, u) in state.bounds.items() if k in tight}
        queue.push(pending_lo[still_open], pending_hi[still_open], worst[still_open], dims[still_open], kept)
        if queue.empty():
            return BabOutcome("unsat", None, boxes_bounded)
        chosen_lo, chosen_hi, chosen_dims, chosen_bounds = queue.pop_worst(batch)
        if proof is not None:
            proof.split(chosen_lo, chosen_hi, chosen_dims)
        pending_lo, pending_hi = bisect(chosen_lo, chosen_hi, chosen_dims)
        pending_bounds = {k: (torch.cat([l, l]), torch.cat([u, u])) for k, (l, u) in chosen_bounds.items()}


def boxes_per_round(graph, intermediate, spec: Spec, most: int) -> int:
    """At most `most` boxes a round, fewer where their bounds would pass ROUND_ELEMENTS (cgan:
    64x64 images): forward mode holds two linear functions of the n_in inputs per neuron and
    box, a backward pass at least two rows per box and neuron."""
    neurons = sum(node.size for node in graph.nodes)
    rows = graph.input_size if intermediate is forward_bounds else max(2, spec.C.shape[-2])
    return max(1, min(most, ROUND_ELEMENTS // (2 * rows * neurons)))


class _Queue:
    """Open boxes with their worst margin, chosen split dimension and intermediate bounds."""

    def __init__(self, lo, hi, score, dims):
        self.lo, self.hi, self.score, self.dims = lo, hi, score, dims
        self.bounds = {}

    def push(self, lo, hi, score, dims, bounds: dict):
        self.lo, self.hi = torch.cat([self.lo, lo]), torch.cat([self.hi, hi])
        self.score, self.dims = torch.cat([self.score, score]), torch.cat([self.dims, dims])
        self.bounds = {k: (torch.cat([self.bounds[k][0], l]), torch.cat([self.bounds[k][1], u]))
                       if k in self.bounds else (l, u) for k, (l, u) in bounds.items()}

    def empty(self) -> bool:
        return len(self.lo) == 0

    def pop_worst(self, n):
        take = self.score.argsort()[:n]
        keep = torch.ones(len(self.lo), dtype=torch.bool, device=self.lo.device)
        keep[take] = False
        out = (self.lo[take], self.hi[take], self.dims[take],
               {k: (l[take], u[take]) for k, (l, u) in self.bounds.items()})
        self.lo, self.hi, self.score, self.dims = self.lo[keep], self.hi[keep], self.score[keep], self.dims[keep]
        self.bounds = {k: (l[keep], u[keep]) for k, (l, u) in self.bounds.items()}
        return out


def _attack_boxes(query, region, lo, hi, lam, margins):
    """Try each open box's centre and the corners minimising each row's linear bound; then a
    short PGD inside the boxes with the worst bounds (the budget follows them as the tree
    grows), from their centres and from the corner minimising the sum of their rows' bounds."""
    from verifier.pipeline import attack_threads

    corners = torch.where(lam > 0, lo.unsqueeze(1), hi.unsqueeze(1))  # (N, m, n)
    points = torch.cat([(lo + hi) / 2, corners.reshape(-1, lo.shape[1])])
    witness = try_counterexamples(query, region, points)
    if witness is not None:
        return witness
    worst = margins.argsort()[:_PGD_BOXES]
    box_lo, box_hi = lo[worst], hi[worst]
    joint = torch.where(lam[worst].sum(1) > 0, box_lo, box_hi)  # minimises the rows' sum
    starts = torch.cat([(box_lo + box_hi) / 2, joint])
    with attack_threads(query):
        for candidates in box_pgd_candidates(query.graph32, region, box_lo.repeat(2, 1), box_hi.repeat(2, 1),
                                             _PGD_STEPS, query.deadline, starts):
            for x in candidates[:4]:
                witness = query.confirm(region, x)
                if witness is not None:
                    return witness
    return None
