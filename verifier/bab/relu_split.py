"""Branch and bound on ReLU splits (beta-CROWN), and on cuts of any other nonlinear node's
input interval (GenBaB, see cuts.py).

A domain is the region's box plus a set of split neurons (active: x >= 0, inactive: x <= 0)
and of cut elements (x >= p or x <= p). Its bound comes from the backward pass with optimised
slopes (alpha) and split and cut multipliers (beta); intermediate bounds are inherited from the
root, tightened only at split and cut elements.
The slopes and multipliers are optimised in float32 (2.5 to 3 times faster than float64 on a
CPU); the bound a domain keeps is the float64 backward pass with the best of them, so unsat
is still decided from float64 bounds only.
Each round takes the domains with the worst bounds, splits the best-scoring neuron of each
(BaBSR score, then the best of the top few by a plain CROWN bound: filtered smart branching),
bounds all children at once, closes the refuted ones, and tries the minimisers of the
children's linear bounds as counterexamples.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from verifier.bab.common import BabOutcome, try_counterexamples
from verifier.bab.cuts import cut_children, cut_nodes, cut_scores, cut_tensors
from verifier.bab.leaf_lp import betas_from, solve_leaf
from verifier.boundprop.engine import SEARCH_DTYPE, BoundState, crown, needs_tight_bounds
from verifier.ops import RULES
from verifier.boundprop.optimize import Spec, cut_key, initial_alphas, initial_betas, optimize_bounds, relu_nodes
from verifier.certify.recorder import relu_split_proof

INTERMEDIATE_ITERATIONS = 10  # alpha-CROWN steps per intermediate node, at the root only
ROOT_ITERATIONS = 40
CHILD_ITERATIONS = 12
FSB_CANDIDATES = 3
# Trees still open after this share of the time restart from a refined root; the refinement
# takes at most REFINE_SHARE of the time then left, each layer LAYER_SHARE of what is left of it.
FIRST_SHARE = 0.1
REFINE_SHARE = 0.5
LAYER_SHARE = 0.4
# PGD inside the open domains with the worst bounds, each round (attack functions below): this
# many domains, runs of this many steps, at most this many multiply-adds a round.
_PGD_DOMAINS = 8
_PGD_STEPS = 20
_PGD_BUDGET = 1e8
_MEMORY_ELEMENTS = 2 ** 24  # per-domain tensors (alphas, betas, lams, Adam moments) budget
# The float32 search aims this far (relative to the bounds' scale) above each threshold, so that
# the float64 certificate clears decide.refuted_disjuncts' margin as well.
_SEARCH_SLACK = 1e-5


@dataclass
class Domains:
    """A batch of domains, each row one domain; every tensor has the domain index first."""

    bounds: dict  # input of a nonlinear node -> float64 (l, u) (N, *shape)
    splits: dict  # relu node -> (N, *shape) int8: +1 active, -1 inactive, 0 free
    alphas: dict  # relu node -> (N, m, *shape), search precision
    betas: dict  # pre-activation -> (N, m, *shape); cut_key(tensor) -> (N, m, *shape, 2); search precision
    lower: torch.Tensor  # (N, m) best certified (float64) lower bounds of the spec rows
    scores: dict  # relu node -> (N, *shape) branching scores (-inf where not branchable)
    input_lam: torch.Tensor  # (N, m, n_in) input coefficients of the last bound
    cuts: dict = field(default_factory=dict)  # cut tensor -> (N, *shape) int8 (optimize.LOWER_CUT | UPPER_CUT)
    cut_scores: dict = field(default_factory=dict)  # cut tensor -> (N, *shape) (-inf where not worth it)
    cut_points: dict = field(default_factory=dict)  # cut tensor -> (N, *shape) where to cut

    _PER_DOMAIN = ("splits", "scores", "cuts", "cut_scores", "cut_points")
    _PER_ROW = ("alphas", "betas")

    def __len__(self):
        return len(self.lower)

    def candidate_scores(self) -> torch.Tensor:
        """(N, k): the scores of every ReLU split, then of every cut, flat."""
        return torch.cat([s.flatten(1) for s in [*self.scores.values(), *self.cut_scores.values()]], 1)

    def branchable(self) -> torch.Tensor:
        """(N,) whether each domain has a free unstable neuron, or an element worth cutting, left."""
        return torch.isfinite(self.candidate_scores()).any(1)

    def _with(self, per_domain, per_row, bounds, lower, input_lam) -> "Domains":
        """Domains whose dict fields are per_domain(field name) and per_row(field name)."""
        fields = {k: per_domain(k) for k in self._PER_DOMAIN}
        fields.update({k: per_row(k) for k in self._PER_ROW})
        return Domains(bounds=bounds, lower=lower, input_lam=input_lam, **fields)

    def only_rows(self, rows: torch.Tensor) -> "Domains":
        """The same domains, keeping the per-row tensors of the given spec rows only."""
        return self._with(lambda k: getattr(self, k), lambda k: {key: v[:, rows] for key, v in getattr(self, k).items()},
                          self.bounds, self.lower[:, rows], self.input_lam[:, rows])

    def select(self, index: torch.Tensor) -> "Domains":
        pick = lambda k: {key: v[index] for key, v in getattr(self, k).items()}
        return self._with(pick, pick, {k: (l[index], u[index]) for k, (l, u) in self.bounds.items()},
                          self.lower[index], self.input_lam[index])

    @staticmethod
    def concat(parts: list["Domains"]) -> "Domains":
        first = parts[0]
        cat = lambda k: {key: torch.cat([getattr(p, k)[key] for p in parts]) for key in getattr(first, k)}
        bounds = {k: (torch.cat([p.bounds[k][0] for p in parts]), torch.cat([p.bounds[k][1] for p in parts]))
                  for k in first.bounds}
        return first._with(cat, cat, bounds, torch.cat([p.lower for p in parts]),
                           torch.cat([p.input_lam for p in parts]))


def relu_split_bab(query, region, spec: Spec) -> BabOutcome:
    """alpha-CROWN on all rows at the root, then one tree per disjunct it leaves open. Trees
    that are still open after a first share of the time restart from a root whose early
    layers' bounds were refined (see refine.py), where that tightens the root."""
    from verifier.bab.refine import refinable_layers

    graph = query.graph64
    lo = torch.as_tensor(region.lo, dtype=torch.float64, device=graph.device).unsqueeze(0)
    hi = torch.as_tensor(region.hi, dtype=torch.float64, device=graph.device).unsqueeze(0)
    query.progress = "relu split (root)"
    root_state = BoundState(graph, lo, hi)
    root_state.recorder = relu_split_proof(query, region, spec)  # None unless a certificate is asked for
    crown(graph, lo, hi, state=root_state, iterations=INTERMEDIATE_ITERATIONS, deadline_check=query.check_time)
    query.check_time()
    root = _bound_root(root_state, spec)
    proven: set[int] = set()
    layers = refinable_layers(root_state)
    if not layers:
        return _trees(query, region, spec, root_state, root, proven)
    first_share = time.monotonic() + FIRST_SHARE * (query.deadline - time.monotonic())
    outcome = _trees(query, region, spec, root_state, root, proven, stop_at=first_share)
    if outcome.verdict != "unknown":
        return outcome
    query.progress = f"relu split, refining early layers after {outcome.domains} domains"
    root = refine_root(query, spec, root_state, root, layers)
    outcome = _trees(query, region, spec, root_state, root, proven, bounded=outcome.domains)
    outcome.note = f"relu split, early layers refined ({outcome.domains} domains)"
    return outcome


def _trees(query, region, spec: Spec, root_state: BoundState, root: "Domains", proven: set[int],
           bounded: int = 1, stop_at: float = float("inf")) -> BabOutcome:
    """A tree per disjunct neither the root nor an earlier tree (`proven`, which grows)
    refutes; unknown when one is still open at stop_at."""
    refuted = query.refuted(root.lower, spec)[0]
    proof = root_state.recorder
    for k in range(spec.n_disjuncts):
        if refuted[k] or k in proven:
            if refuted[k] and k not in proven and proof is not None:
                proof.root_refutes(k, spec)
            continue
        rows = spec.rows_of(k)
        if proof is not None:
            proof.tree_begin(k, rows)
        outcome = _tree(query, _one_disjunct(region, k), spec.only_disjunct(k), root_state, root.only_rows(rows), stop_at)
        if proof is not None:
            proof.tree_end(outcome.verdict == "unsat")
        bounded += outcome.domains
        if outcome.verdict != "unsat":
            outcome.domains = bounded
            return outcome
        proven.add(k)
    return BabOutcome("unsat", None, bounded)


def _one_disjunct(region, k: int):
    """The region with disjunct k alone: what its tree is to violate (a point that does
    violates the whole property)."""
    from verifier.spec.region import Region

    return Region(region.lo, region.hi, [region.disjuncts[k]])


def refine_root(query, spec: Spec, root_state: BoundState, root: Domains, layers: list[str]) -> Domains:
    """The root domain after refining `layers` of root_state (in place), one at a time while
    that pays, within REFINE_SHARE of the time left."""
    from verifier.bab.refine import refine_node, unstable_count

    start = time.monotonic()
    budget_end = start + REFINE_SHARE * (query.deadline - start)
    for name in layers:
        left = budget_end - time.monotonic()
        if left <= 0:
            break
        before = unstable_count(root_state)
        if root_state.recorder is not None:
            root_state.recorder.refine_begin(name)
        l, u = refine_node(root_state, name, time.monotonic() + left * LAYER_SHARE)
        root_state.set_bounds(name, l, u)
        crown(root_state.graph, root_state.lo, root_state.hi, state=root_state,
              iterations=INTERMEDIATE_ITERATIONS, deadline_check=query.check_time, after=name)
        root = _bound_root(root_state, spec)
        if query.refuted(root.lower, spec).all() or unstable_count(root_state) > 0.9 * before:
            break
    return root


def _bound_root(state: BoundState, spec: Spec) -> Domains:
    root = bound_domains(state, spec, root_domains(state, spec), ROOT_ITERATIONS)
    if state.recorder is not None:
        state.recorder.root_bound(state, root)
    return root


def _tree(query, region, spec: Spec, root_state: BoundState, domains: Domains,
          stop_at: float = float("inf")) -> BabOutcome:
    bounded = 0
    pre_activation = {n.name: n.inputs[0] for n in relu_nodes(root_state)}
    m = spec.C.shape[0]
    cut_elements = sum(cut[0].numel() for cut in domains.cuts.values())
    per_domain = m * (sum(max(1, n.size) for n in relu_nodes(root_state)) + 2 * cut_elements) * 6
    batch = int(max(1, min(1024, _MEMORY_ELEMENTS // max(per_domain, 1))))
    while True:
        refuted = query.refuted(domains.lower, spec).all(1)
        if root_state.recorder is not None and refuted.any():
            root_state.recorder.tree_leaves(domains.select(refuted))
        domains = domains.select(~refuted)
        if len(domains) == 0:
            return BabOutcome("unsat", None, bounded)
        witness = _attack(query, region, spec, root_state, domains)
        if witness is not None:
            return BabOutcome("sat", witness, bounded)
        domains, leaves = _split_off_leaves(domains)
        if leaves is not None:
            outcome = _close_leaves(query, region, spec, root_state, leaves, pre_activation)
            if outcome is not None:
                return outcome
        if len(domains) == 0:
            continue
        query.check_time()
        if time.monotonic() > stop_at:
            return BabOutcome("unknown", None, bounded)
        order = spec.disjunct_margins(domains.lower).min(1).values.argsort()
        chosen, rest = domains.select(order[:batch]), domains.select(order[batch:])
        try:
            children = _branch(root_state, spec, chosen, pre_activation)
            children = bound_domains(root_state, spec, children, CHILD_ITERATIONS)
        except torch.cuda.OutOfMemoryError:
            batch = max(1, batch // 2)
            domains = Domains.concat([chosen, rest])
            continue
        bounded += len(children)
        query.progress = f"relu split ({bounded} domains in this tree)"
        domains = Domains.concat([rest, children]) if len(rest) else children


def root_domains(state: BoundState, spec: Spec) -> Domains:
    """The root (one box, no splits) as a domain, its bound not yet computed."""
    m = spec.C.shape[-2]
    keys = needs_tight_bounds(state.graph)
    bounds = {k: state.bounds[k] for k in keys}
    splits = {n.name: torch.zeros_like(state.bounds[n.inputs[0]][0], dtype=torch.int8)
              for n in relu_nodes(state)}
    lower = state.lo.new_full((1, m), float("-inf"))
    # cuts are not part of unsat certificates (the checker knows ReLU splits only)
    cut_names = cut_tensors(state.graph) if state.recorder is None else []
    cuts = {name: torch.zeros_like(state.bounds[name][0], dtype=torch.int8) for name in cut_names}
    betas = initial_betas(state, m)
    betas.update({cut_key(name): state.lo.new_zeros(1, m, *cut.shape[1:], 2) for name, cut in cuts.items()})
    return Domains(bounds, splits, _cast(initial_alphas(state, m), SEARCH_DTYPE), _cast(betas, SEARCH_DTYPE),
                   lower, {}, state.lo.new_zeros(1, m, state.graph.input_size, dtype=SEARCH_DTYPE), cuts)


def _cast(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: v.to(dtype) for k, v in tensors.items()}


def _state_for(root: BoundState, domains: Domains, dtype: torch.dtype = torch.float64) -> BoundState:
    """The domains' bound state (float64 as the root, or the search precision)."""
    n = len(domains)
    # a cut of an input that a nonlinear node reads directly shrinks the domain's box
    lo, hi = domains.bounds.get(root.graph.input_name, (root.lo.expand(n, *root.lo.shape[1:]),
                                                        root.hi.expand(n, *root.hi.shape[1:])))
    state = BoundState(root.graph, lo, hi)
    state.bounds.update(domains.bounds)
    state.deadline_check = root.deadline_check
    return state if dtype == state.lo.dtype else state.cast(dtype)


def _search_spec(spec: Spec, lower: torch.Tensor) -> Spec:
    finite = lower[torch.isfinite(lower)]
    scale = 1.0 + (float(finite.abs().max()) if finite.numel() else 0.0) + float(spec.d.abs().max())
    return spec.to(SEARCH_DTYPE, raise_thresholds_by=_SEARCH_SLACK * scale)


def _certified(state: BoundState, spec: Spec, domains: Domains, alphas: dict, betas: dict) -> torch.Tensor:
    """Float64 lower bounds (N, m) of the domains (their float64 `state`) with the given (search
    precision) parameters."""
    lower, _, _ = optimize_bounds(state, spec, 0, alphas=_cast(alphas, torch.float64),
                                  betas=_cast(betas, torch.float64), splits=domains.splits, cuts=domains.cuts)
    return lower


def bound_domains(root: BoundState, spec: Spec, domains: Domains, iterations: int) -> Domains:
    """Optimise the children's bounds (warm-started) in the search precision, certify them in
    float64, and compute their branching scores."""
    exact = _state_for(root, domains)
    state = exact.cast(SEARCH_DTYPE)
    record = {n.name: None for n in [*relu_nodes(state), *cut_nodes(state.graph)]}
    record[state.graph.input_name] = None
    _, alphas, betas = optimize_bounds(
        state, _search_spec(spec, domains.lower), iterations,
        alphas={k: v.clone() for k, v in domains.alphas.items()},
        betas={k: v.clone() for k, v in domains.betas.items()}, splits=domains.splits, record=record,
        cuts=domains.cuts)
    lower = torch.maximum(_certified(exact, spec, domains, alphas, betas), domains.lower)  # inside its parent
    scores = _babsr_scores(state, spec, lower, domains.splits, record)
    gains, points = cut_scores(state, lower <= spec.threshold, record) if domains.cuts else ({}, {})
    input_lam = record[state.graph.input_name]
    input_lam = domains.input_lam if input_lam is None else input_lam.detach().flatten(2)
    return Domains(domains.bounds, domains.splits, alphas, betas, lower, scores, input_lam, domains.cuts,
                   gains, {k: p.to(torch.float64) for k, p in points.items()})


def _babsr_scores(state, spec, lower, splits, record):
    """How much each free unstable neuron's upper-relaxation intercept costs the open rows."""
    open_rows = lower <= spec.threshold
    scores = {}
    for node in relu_nodes(state):
        l, u = state.bounds[node.inputs[0]]
        free = (l < 0) & (u > 0) & (splits[node.name] == 0)
        intercept = (-l * u / (u - l).clamp(min=1e-12)).clamp(min=0)
        lam = record[node.name]
        rows = open_rows.reshape(*open_rows.shape, *([1] * (lam.dim() - 2))).to(lam.dtype)
        weight = (lam.clamp(max=0).abs() * rows).sum(1)
        score = weight * intercept + 1e-6 * (u - l)  # width breaks ties where lam is 0
        scores[node.name] = torch.where(free, score, torch.full_like(score, float("-inf")))
    return scores


def _branch(root, spec: Spec, domains: Domains, pre_activation: dict[str, str]) -> Domains:
    """Two children per domain, splitting one neuron active and inactive: among the top
    BaBSR candidates, the one whose worse child has the best plain-CROWN bound (filtered
    smart branching)."""
    flat = domains.candidate_scores()
    top_scores, top = flat.topk(min(FSB_CANDIDATES, flat.shape[1]), dim=1)
    if top.shape[1] == 1:
        return split_children(domains, top[:, 0], pre_activation)
    n = len(domains)
    target = _search_spec(spec, domains.lower)
    quality = []
    for j in range(top.shape[1]):
        children = split_children(domains, top[:, j], pre_activation)
        lower, _, _ = optimize_bounds(_state_for(root, children, SEARCH_DTYPE), target, 0, alphas=children.alphas,
                                      betas=children.betas, splits=children.splits, cuts=children.cuts)
        worst = target.disjunct_margins(lower).min(1).values
        quality.append(torch.minimum(worst[:n], worst[n:]))
    quality = torch.stack(quality, 1).masked_fill(torch.isinf(top_scores), float("-inf"))
    best = top[torch.arange(n, device=top.device), quality.argmax(1)]
    return split_children(domains, best, pre_activation)


def split_children(domains: Domains, neuron: torch.Tensor, pre_activation: dict[str, str]) -> Domains:
    """Split each domain's neuron (a flat index over all ReLU layers, then over all cut
    tensors, as in candidate_scores): active children (and the upper sides of cuts) first."""
    names = [*domains.scores, *domains.cut_scores]
    sizes = [t[0].numel() for t in [*domains.scores.values(), *domains.cut_scores.values()]]
    offsets = torch.tensor([0] + sizes, device=neuron.device).cumsum(0)
    n = len(domains)
    active, inactive = domains.select(torch.arange(n)), domains.select(torch.arange(n))
    for i, name in enumerate(names):
        in_layer = (neuron >= offsets[i]) & (neuron < offsets[i + 1])
        if not in_layer.any():
            continue
        rows = in_layer.nonzero().flatten()
        cols = neuron[rows] - offsets[i]
        if i >= len(domains.scores):
            cut_children(active, inactive, name, rows, cols, domains.cut_points[name].view(n, -1)[rows, cols])
            continue
        pre = pre_activation[name]
        for child, sign in ((active, 1), (inactive, -1)):
            child.splits[name] = child.splits[name].clone()
            child.splits[name].view(n, -1)[rows, cols] = sign
            l, u = (t.clone() for t in child.bounds[pre])
            if sign > 0:
                l.view(n, -1)[rows, cols] = l.view(n, -1)[rows, cols].clamp(min=0)
            else:
                u.view(n, -1)[rows, cols] = u.view(n, -1)[rows, cols].clamp(max=0)
            child.bounds[pre] = (l, u)
    return Domains.concat([active, inactive])


def _split_off_leaves(domains: Domains):
    """Domains with no free unstable neuron left are leaves: their relaxation is exact."""
    branchable = domains.branchable()
    if branchable.all():
        return domains, None
    return domains.select(branchable), domains.select(~branchable)


def _close_leaves(query, region, spec, root, leaves: Domains, pre_activation: dict):
    """Fully split leaves are decided exactly by LP (see leaf_lp): a counterexample from an
    LP minimiser, or split multipliers from its duals that make the float64 bound refute the
    leaf. A leaf the LP leaves open (a minimum within the margin, a minimiser that does not
    replay, an LP failure), or one with MaxPool, goes to the exact stage (verifier.smt.stage):
    z3 on the leaf, with the float margin rule; only its unknown (timeout) leaves it open."""
    lp_ok = not any(n.op != "relu" and RULES[n.op].nonlinear for n in root.graph.nodes)
    for i in range(len(leaves)):
        query.check_time()
        leaf = leaves.select(torch.tensor([i]))
        state = _state_for(root, leaf)
        if lp_ok:
            minimisers, multipliers = solve_leaf(state, spec.C, leaf.splits, pre_activation)
            points = [x for x in (minimisers or []) if x is not None]
            if points:
                witness = try_counterexamples(query, region, torch.as_tensor(np.stack(points)))
                if witness is not None:
                    return BabOutcome("sat", witness, len(leaves))
            betas = betas_from(multipliers, _cast(leaf.betas, torch.float64))
            alphas = _cast(leaf.alphas, torch.float64)
            lower, _, _ = optimize_bounds(state, spec, 0, alphas=alphas, betas=betas, splits=leaf.splits)
            if query.refuted(lower, spec).all():
                if root.recorder is not None:
                    root.recorder.tree_lp_leaf(leaf.splits, alphas, betas)
                continue
        outcome = _exact_leaf(query, region, spec, root, leaf)
        if outcome is not None:
            return outcome
        if root.recorder is not None:
            root.recorder.tree_z3_leaf(leaf, region, spec)
    return None


def _exact_leaf(query, region, spec, root, leaf: Domains):
    """The exact stage on one leaf: None when it is closed, else the BaB outcome."""
    from verifier.smt.stage import decide_domain

    to_np = lambda t: t.detach().cpu().numpy()
    exact = decide_domain(query, region, {**root.bounds, **leaf.bounds}, to_np(spec.C).astype(np.float64),
                          to_np(spec.d).astype(np.float64), to_np(spec.owner), spec.n_disjuncts, leaf.splits)
    if exact.verdict == "unsat":
        return None
    return BabOutcome(exact.verdict, exact.witness, len(leaf), f"exact leaf: {exact.note}")


def _attack(query, region, spec, root, domains: Domains):
    """Try the minimisers of the domains' linear bounds (box corners), then PGD from those of the
    worst domains (the budget follows the worst bounds as the tree grows), each run kept inside
    its domain by hinges on the domain's split neurons."""
    lam = domains.input_lam
    lo, hi = root.lo.flatten(1), root.hi.flatten(1)
    corners = torch.where(lam.flatten(2) > 0, lo.unsqueeze(1), hi.unsqueeze(1))  # (N, m, n)
    witness = try_counterexamples(query, region, corners.reshape(-1, lo.shape[1]))
    if witness is not None:
        return witness
    return _pgd_in_worst_domains(query, region, spec, root, domains, corners)


def _pgd_in_worst_domains(query, region, spec, root, domains: Domains, corners):
    from verifier.attack.targeted import hinged_candidates
    from verifier.pipeline import attack_threads

    count = min(_PGD_DOMAINS, len(domains),
                int(_PGD_BUDGET / (_PGD_STEPS * query.graph32.multiply_adds())))
    if count == 0:
        return None
    worst = spec.disjunct_margins(domains.lower).min(1).values.argsort()[:count]
    binding_row = (domains.lower - spec.threshold)[worst].argmax(1)  # the row that the domain's bound rests on
    starts = corners[worst, binding_row]
    hinges = {}
    for node in relu_nodes(root):
        l, u = domains.bounds[node.inputs[0]]
        sides = domains.splits[node.name][worst].flatten(1).to(torch.float32)
        hinges[node.inputs[0]] = sides / (u - l)[worst].flatten(1).clamp(min=1e-12).to(torch.float32)
    which = torch.zeros(count, dtype=torch.long)
    with attack_threads(query):
        for candidates in hinged_candidates(query.graph32, region, starts, which, hinges, _PGD_STEPS,
                                            query.deadline):
            for x in candidates[:4]:
                witness = query.confirm(region, x)
                if witness is not None:
                    return witness
    return None
