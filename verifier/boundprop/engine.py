"""Bound propagation on the graph: IBP forward, CROWN backward, batched over B input boxes.

A BoundState holds, for one batch of boxes, the bounds (l, u) of every tensor and the linear
relaxations of the nonlinear nodes built from them. `backward` computes lower bounds of
C . h_start for any node by the CROWN backward pass; `crown` tightens the inputs of every
nonlinear node that way, in topological order, then bounds the output.

The bounds hold for every network in which each node's result may be off by its float32
rounding bound r (verifier.float_error.local_rounding, from the magnitudes of its inputs'
bounds): the real-valued network (no error) and the network as onnxruntime runs it in float32
(each result rounded) are two of them. IBP widens each node's interval by r; the backward pass
charges |lam| . r at each node it passes, so cancellation in later layers is accounted for.
"""
from __future__ import annotations

import itertools
import math

import torch

from verifier.boundprop.adam import Adam
from verifier.float_error import charging_rounding, local_rounding
from verifier.graph.ir import Graph
from verifier.ops import RULES

# Largest number of lam elements one backward pass may hold at a node (memory budget).
MAX_LAM_ELEMENTS = 2 ** 25
# Precision in which relaxation parameters are searched for (2.5 to 3 times faster than float64
# on a CPU); the bounds kept are recomputed in the state's own precision with what was found.
SEARCH_DTYPE = torch.float32


class BoundState:
    def __init__(self, graph: Graph, lo: torch.Tensor, hi: torch.Tensor):
        self.graph = graph
        self.lo = lo.reshape(lo.shape[0], *graph.input_shape)
        self.hi = hi.reshape(hi.shape[0], *graph.input_shape)
        self.bounds: dict[str, tuple[torch.Tensor, torch.Tensor]] = {graph.input_name: (self.lo, self.hi)}
        self._relaxations: dict[str, tuple] = {}
        self._roundings: dict[str, torch.Tensor | None] = {}
        self._derived: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # IBP of nodes without bounds
        # Optimisable relaxation parameters, used by the backward pass from the output:
        # relu node -> lower slopes (B, m, *shape); other optimisable nodes -> their parameters
        # (B, m, *shape, k), each in [0, 1] (see Rule.initial_alpha)
        self.alphas: dict[str, torch.Tensor] = {}
        self.lam_offsets: dict[str, torch.Tensor] = {}  # pre-activation -> beta * sign (B, m, *shape)
        self.deadline_check = None  # called between the passes of long computations; raises to stop
        self.recorder = None  # certificate recording (verifier/certify), set only when one is asked for

    def check_time(self) -> None:
        if self.deadline_check is not None:
            self.deadline_check()

    @property
    def batch(self) -> int:
        return self.lo.shape[0]

    def shape_of(self, name: str):
        return self.graph.shape_of(name)

    def set_bounds(self, name: str, l: torch.Tensor, u: torch.Tensor) -> None:
        self.bounds[name] = (l, u)
        self._derived.clear()
        for node in self.graph.nodes:  # relaxations and roundings built on the old bounds are stale
            if name in node.inputs:
                self._relaxations.pop(node.name, None)
                self._roundings.pop(node.name, None)

    def relaxation(self, node):
        """The node's relaxation from its inputs' bounds: relax(node, l0, u0, l1, u1, ...)."""
        if node.name not in self._relaxations:
            bounds = [t for name in node.inputs for t in self.bounds[name]]
            self._relaxations[node.name] = RULES[node.op].relax(node, *bounds)
        return self._relaxations[node.name]

    def rounding(self, node) -> torch.Tensor | None:
        """(B, *shape): how far float32 execution may move this node's result, from the
        magnitudes of its inputs' bounds; None for exact ops (and within
        float_error.real_valued_network())."""
        if not charging_rounding():
            return None
        if node.name not in self._roundings:
            self._roundings[node.name] = local_rounding(node, self.bounds_of)
        return self._roundings[node.name]

    def bounds_of(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The bounds of a tensor: its own, or IBP from its inputs' (domain states keep the
        inputs of nonlinear nodes only)."""
        if name in self.bounds:
            return self.bounds[name]
        if name not in self._derived:
            self._derived[name] = self.ibp_node(self.graph.by_name[name])
        return self._derived[name]

    def cast(self, dtype: torch.dtype) -> "BoundState":
        """The same boxes and bounds in another precision, with this one's deadline check."""
        copy = BoundState(self.graph.to(dtype, self.graph.device), self.lo.to(dtype), self.hi.to(dtype))
        copy.deadline_check = self.deadline_check
        copy.bounds = {name: (l.to(dtype), u.to(dtype)) for name, (l, u) in self.bounds.items()}
        return copy

    def select(self, boxes: torch.Tensor) -> "BoundState":
        """A state over boxes[i] of this one (repeats allowed), with their bounds and its deadline
        check; no parameters."""
        sub = BoundState(self.graph, self.lo[boxes], self.hi[boxes])
        sub.deadline_check = self.deadline_check
        sub.bounds = {name: (l[boxes], u[boxes]) for name, (l, u) in self.bounds.items()}
        sub._relaxations = {name: tuple(t[boxes] for t in relaxation)
                            for name, relaxation in self._relaxations.items()}
        sub._roundings = {name: None if r is None else r[boxes] for name, r in self._roundings.items()}
        return sub

    def ibp_node(self, node):
        l, u = RULES[node.op].ibp(node, *map(self.bounds_of, node.inputs))
        r = self.rounding(node)
        return (l, u) if r is None else (l - r, u + r)


def ibp(graph: Graph, lo: torch.Tensor, hi: torch.Tensor) -> BoundState:
    state = BoundState(graph, lo, hi)
    for node in graph.nodes:
        state.bounds[node.name] = state.ibp_node(node)
    return state


def backward(state: BoundState, start: str, C: torch.Tensor, record: dict | None = None,
             use_parameters: bool = False, rounding: bool = True) -> torch.Tensor:
    """Lower bound (B, m) of C . h_start over the box, with C of shape (B, m, *shape(start)).

    With use_parameters, the state's alphas and split multipliers (lam_offsets) take part;
    they are shaped for this C. Names in `record` get the lam that reached them. Without
    `rounding`, the bound is of the real-valued network alone (no float32 rounding charged).
    """
    graph = state.graph
    lams = {start: C}
    bias = C.new_zeros(C.shape[:2])
    started = False
    for node in reversed(graph.nodes):
        started = started or node.name == start
        if not started or node.name not in lams:
            continue
        lam = lams.pop(node.name)
        if use_parameters and node.name in state.lam_offsets:
            lam = lam + state.lam_offsets[node.name]
        if record is not None and node.name in record:
            record[node.name] = lam
        r = state.rounding(node) if rounding else None
        if r is not None:
            bias = bias - _rounding_charge(lam, r)
        alpha = state.alphas.get(node.name) if use_parameters else None
        lam_inputs, node_bias = RULES[node.op].backward(node, lam, state, alpha)
        if node_bias is not None:
            bias = bias + node_bias
        for name, lam in zip(node.inputs, lam_inputs):
            if lam is not None:
                lams[name] = lams[name] + lam if name in lams else lam
    lam_x = lams.get(graph.input_name)
    if use_parameters and lam_x is not None and graph.input_name in state.lam_offsets:
        lam_x = lam_x + state.lam_offsets[graph.input_name]
    if record is not None and graph.input_name in record:
        record[graph.input_name] = lam_x
    if lam_x is None:
        return bias
    return bias + concretize_lower(lam_x, state.lo, state.hi)


def _rounding_charge(lam: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """|lam| . r (B, m); an unbounded rounding (r = inf) costs nothing where no row reads it."""
    lam_abs, r = lam.abs().reshape(*lam.shape[:2], -1), r.reshape(r.shape[0], -1)
    if torch.isfinite(r).all():
        return torch.einsum("bmn,bn->bm", lam_abs, r)
    return torch.where(lam_abs == 0, 0.0, lam_abs * r.unsqueeze(1)).sum(-1)


def concretize_lower(lam: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """min over the box of lam . x: (B, m)."""
    lam = lam.flatten(2)
    centre, radius = ((hi + lo) / 2).flatten(1), ((hi - lo) / 2).flatten(1)
    return torch.einsum("bmn,bn->bm", lam, centre) - torch.einsum("bmn,bn->bm", lam.abs(), radius)


def bound_rows(state: BoundState, name: str, rows: torch.Tensor,
               iterations: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN lower and upper bounds (B, k) of the elements `rows` (flat indices) of a node;
    with iterations > 0, alpha-CROWN with slopes optimised for these rows."""
    chunk = max(1, MAX_LAM_ELEMENTS // (2 * state.batch * _widest(state, name)))
    parts = []
    for part in rows.split(chunk):
        parts.append(_element_bounds(state, name, part.expand(state.batch, -1), iterations))
        state.check_time()
    return torch.cat([l for l, _ in parts], 1), torch.cat([u for _, u in parts], 1)


def _widest(state: BoundState, name: str) -> int:
    """The largest node size a backward pass from `name` carries lams of."""
    return max([math.prod(state.shape_of(name))] + [n.size for n in state.graph.nodes])


def _element_bounds(state: BoundState, name: str, elements: torch.Tensor, iterations: int = 0):
    """Lower and upper bounds (B, k) of element elements[b, j] (a flat index) of node `name` in
    box b: one backward pass from the rows +e and -e."""
    shape = state.shape_of(name)
    B, k = elements.shape
    C = state.lo.new_zeros(B, 2 * k, math.prod(shape))
    boxes = torch.arange(B, device=C.device).unsqueeze(1)
    rows = torch.arange(k, device=C.device)
    C[boxes, rows, elements] = 1.0
    C[boxes, rows + k, elements] = -1.0
    C = C.reshape(B, 2 * k, *shape)
    lb = optimized_backward(state, name, C, iterations) if iterations else backward(state, name, C)
    return lb[:, :k], -lb[:, k:]


def needs_tight_bounds(graph: Graph) -> dict[str, bool]:
    """Inputs of nonlinear nodes (every input: a product reads two) -> whether only unstable
    rows matter (ReLU-only readers)."""
    result: dict[str, bool] = {}
    for node in graph.nodes:
        if RULES[node.op].nonlinear:
            for name in node.inputs:
                result[name] = result.get(name, True) and RULES[node.op].tightens_straddling_rows_only
    return result


def parameter_nodes(graph: Graph, before: str | None = None) -> list:
    """The nodes with optimisable relaxation parameters (ReLUs and the smooth ops whose rules
    give an initial_alpha), those before `before` only when given."""
    nodes = []
    for node in graph.nodes:
        if node.name == before:
            break
        if node.op == "relu" or RULES[node.op].optimisable:
            nodes.append(node)
    return nodes


def optimized_backward(state: BoundState, start: str, C: torch.Tensor, iterations: int,
                       lr: float = 0.1) -> torch.Tensor:
    """alpha-CROWN for the rows C of an intermediate node: the lower slopes of the ReLUs before
    it (and the parameters of the other optimisable nodes), one per (box, row, neuron), are searched by Adam in SEARCH_DTYPE for the best bound of
    each row; the bound returned is the backward pass in the state's precision with them."""
    nodes = parameter_nodes(state.graph, before=start)
    if not nodes:
        return backward(state, start, C)
    search = state if state.lo.dtype == SEARCH_DTYPE else state.cast(SEARCH_DTYPE)
    slopes = _best_slopes(search, start, C.to(SEARCH_DTYPE), nodes, iterations, lr)
    if state.recorder is not None:
        state.recorder.intermediate_slopes(state, start, C, slopes)
    saved, state.alphas = state.alphas, {name: a.to(state.lo.dtype) for name, a in slopes.items()}
    try:
        with torch.no_grad():
            return backward(state, start, C, use_parameters=True)
    finally:
        state.alphas = saved


def adaptive_slopes(state: BoundState, relus, m: int) -> dict[str, torch.Tensor]:
    """The adaptive CROWN slopes (1 where u > -l, else 0), one per (domain, row, neuron); for
    other optimisable nodes, their rule's initial parameters (those of its CROWN relaxation)."""
    alphas = {}
    for node in relus:
        if node.op != "relu":
            alphas[node.name] = RULES[node.op].initial_alpha(node, state, m)
            continue
        l, u = state.bounds[node.inputs[0]]
        slope = (u > -l).to(l.dtype).unsqueeze(1)
        alphas[node.name] = slope.expand(-1, m, *([-1] * (l.dim() - 1))).clone()
    return alphas


def _best_slopes(state: BoundState, start: str, C: torch.Tensor, relus, iterations: int, lr: float):
    """The slopes giving each row of C its best bound over `iterations` Adam steps."""
    alphas = {name: a.requires_grad_(True) for name, a in adaptive_slopes(state, relus, C.shape[1]).items()}
    best_slopes = {name: a.detach().clone() for name, a in alphas.items()}
    saved, state.alphas = state.alphas, alphas
    optimizer = Adam([(list(alphas.values()), lr)])
    best = None
    try:
        for step in range(iterations + 1):
            with torch.set_grad_enabled(step < iterations):
                lower = backward(state, start, C, use_parameters=True)
            if best is not None:
                keep_where(best_slopes, alphas, lower.detach() > best)
            best = lower.detach() if best is None else torch.maximum(best, lower.detach())
            if step == iterations or not lower.requires_grad:  # no slope reaches these rows
                break
            state.check_time()
            optimizer.zero_grad()
            (-lower.sum()).backward()
            optimizer.step()
            with torch.no_grad():
                for a in alphas.values():
                    a.clamp_(0, 1)
    finally:
        state.alphas = saved
    return best_slopes


def keep_where(best: dict[str, torch.Tensor], current: dict[str, torch.Tensor], improved: torch.Tensor):
    """Copy the (box, row) slices of `current` where `improved` (B, m) into `best`."""
    for name, value in current.items():
        mask = improved.reshape(*improved.shape, *([1] * (value.dim() - 2)))
        best[name] = torch.where(mask, value.detach(), best[name])


def crown(graph: Graph, lo: torch.Tensor, hi: torch.Tensor, state: BoundState | None = None,
          iterations: int = 0, deadline_check=None, after: str | None = None,
          every_neuron: bool = False) -> BoundState:
    """IBP everywhere, then CROWN on every input of a nonlinear node, in topological order
    (alpha-CROWN with that many Adam steps per node when iterations > 0). deadline_check, when
    given, is called between backward passes (it raises to stop). With `after`, the nodes up to
    that one keep the state's bounds and only the later ones are tightened. Inputs read by
    ReLUs only are tightened where unstable, unless every_neuron (tight magnitudes).

    Networks whose intermediate CROWN would cost more than TIGHTENING_BUDGET multiply-adds a box
    start from forward-mode bounds where those are cheap (few inputs), and each node is then
    tightened only while the budget lasts (see TighteningBudget)."""
    fresh = state is None
    state = state or BoundState(graph, lo, hi)
    state.deadline_check = deadline_check
    targets = needs_tight_bounds(graph)
    if every_neuron:
        targets = dict.fromkeys(targets, False)
    if after is not None:
        names = [n.name for n in graph.nodes]
        targets = {k: v for k, v in targets.items() if k in names[names.index(after) + 1:]}
    budget = TighteningBudget(graph, iterations)
    if fresh and after is None:
        _seed_large_network(state, targets, budget)
    for node in graph.nodes:
        l, u = state.ibp_node(node)
        if node.name in state.bounds:  # keep what is already known (e.g. from a parent domain)
            l = torch.fmax(l, state.bounds[node.name][0])
            u = torch.fmin(u, state.bounds[node.name][1])
        state.set_bounds(node.name, l, u)
        if node.name in targets and budget.spend(state, node.name, targets[node.name]):
            tighten(state, node.name, unstable_only=targets[node.name], iterations=iterations)
    return state


# Multiply-adds per box (counted by crown_multiply_adds' model, never timed) that the backward
# passes of `crown`'s intermediate bounds may cost. Every network of ../shared/vnncomp and all
# but four of ../shared/vnncomp2024 stay below it, so CROWN runs on them unchanged (largest:
# traffic_signs' 7.2e10, 25 s on the 2-core CPU). cgan's ConvTranspose generators (5e12) and
# TinyYOLO (4e12) would take hours.
TIGHTENING_BUDGET = 1e11


class TighteningBudget:
    """Which intermediate nodes `crown` may tighten by backward passes: in topological order,
    each whose passes (two rows per neuron it bounds, through the nodes up to it) fit in what
    is left of TIGHTENING_BUDGET; the others keep their IBP (or forward-mode) bounds, which are
    sound, only looser. The choice follows from counts, so a run takes the same path on any
    machine."""

    def __init__(self, graph: Graph, iterations: int = 0):
        self.upto = _multiply_adds_upto(graph)
        self.passes = 1 + iterations  # alpha-CROWN runs the backward pass once per Adam step
        self.left = TIGHTENING_BUDGET

    def cost(self, state: BoundState, name: str, unstable_only: bool) -> float:
        return self.passes * 2 * _bounded_neurons(state, name, unstable_only) * self.upto.get(name, 0)

    def spend(self, state: BoundState, name: str, unstable_only: bool) -> bool:
        cost = self.cost(state, name, unstable_only)
        if cost > self.left:
            return False
        self.left -= cost
        return True


def _seed_large_network(state: BoundState, targets: dict[str, bool], budget: TighteningBudget) -> None:
    """Where CROWN's intermediate bounds would overrun the budget on the IBP bounds and forward
    mode costs less than the budget (cgan: 4 free inputs), start from forward-mode bounds."""
    from verifier.boundprop.forward import forward_bounds, forward_multiply_adds  # forward imports this module

    graph = state.graph
    if forward_multiply_adds(graph) > TIGHTENING_BUDGET or any(
            not hasattr(RULES[node.op], "forward_linear") for node in graph.nodes):
        return
    ibp_state = ibp(graph, state.lo, state.hi)
    if sum(budget.cost(ibp_state, name, only) for name, only in targets.items()) <= TIGHTENING_BUDGET:
        return
    seeded = forward_bounds(graph, state.lo, state.hi, deadline_check=state.deadline_check)
    for name in targets:
        state.set_bounds(name, *seeded.bounds[name])


def crown_multiply_adds(state: BoundState, rows: int) -> float:
    """Multiply-adds per box (mean over the state's boxes) of CROWN as `crown` runs it without
    a budget: for each input of a nonlinear node, two rows (lower and upper bound) per neuron it
    bounds (the unstable ones, where only ReLUs read it) back through the nodes up to it; then
    `rows` spec rows back through the whole graph."""
    graph = state.graph
    upto = _multiply_adds_upto(graph)
    total = float(rows * graph.multiply_adds())
    for name, unstable_only in needs_tight_bounds(graph).items():
        total += 2 * _bounded_neurons(state, name, unstable_only) * upto.get(name, 0)
    return total


def _multiply_adds_upto(graph: Graph) -> dict[str, int]:
    """Node -> multiply-adds of the nodes up to and including it (one sample); the graph's
    input, which a nonlinear node may read, costs nothing to bound."""
    return dict(zip((n.name for n in graph.nodes), itertools.accumulate(n.multiply_adds for n in graph.nodes)))


def _bounded_neurons(state: BoundState, name: str, unstable_only: bool) -> float:
    """How many neurons of a node `tighten` bounds, per box (mean over the boxes)."""
    l, u = (t.reshape(t.shape[0], -1) for t in state.bounds[name])
    if not unstable_only:
        return float(l.shape[1])
    return ((l < 0) & (u > 0)).sum(1).double().mean().item()


def tighten(state: BoundState, name: str, unstable_only: bool, iterations: int = 0) -> None:
    l, u = state.bounds[name]
    flat_l, flat_u = l.reshape(l.shape[0], -1), u.reshape(u.shape[0], -1)  # scalar nodes too
    mask = (flat_l < 0) & (flat_u > 0) if unstable_only else flat_l < flat_u  # exact ones stay
    rows = mask.any(0).nonzero().flatten()
    if rows.numel() == 0:
        return
    pairs = mask.nonzero()
    if iterations == 0 and len(pairs) < _PAIR_FRACTION * state.batch * rows.numel():
        new_l, new_u = _bound_pairs(state, name, pairs[:, 0], pairs[:, 1])
        new_l = flat_l.index_put((pairs[:, 0], pairs[:, 1]), new_l)[:, rows]
        new_u = flat_u.index_put((pairs[:, 0], pairs[:, 1]), new_u)[:, rows]
    else:
        new_l, new_u = bound_rows(state, name, rows, iterations)
    flat_l, flat_u = flat_l.clone(), flat_u.clone()
    # fmax/fmin: a NaN bound (a relaxation over an infinite interval) never replaces a number
    flat_l[:, rows] = torch.fmax(flat_l[:, rows], new_l)
    flat_u[:, rows] = torch.fmin(flat_u[:, rows], new_u)
    state.set_bounds(name, flat_l.reshape(l.shape), flat_u.reshape(u.shape))


# Bound (box, neuron) pairs one by one instead of every box's copy of the rows any box needs,
# when the pairs are fewer than this fraction of those copies (boxes differ in their unstable
# neurons, as in input splitting).
_PAIR_FRACTION = 0.6


def _bound_pairs(state: BoundState, name: str, boxes: torch.Tensor, neurons: torch.Tensor):
    """CROWN lower and upper bounds (P,) of neuron neurons[p] of node `name` in box boxes[p]."""
    chunk = max(1, MAX_LAM_ELEMENTS // (2 * _widest(state, name)))
    parts = [_element_bounds(state.select(box_part), name, neuron_part.unsqueeze(1))
             for box_part, neuron_part in zip(boxes.split(chunk), neurons.split(chunk))]
    return torch.cat([l[:, 0] for l, _ in parts]), torch.cat([u[:, 0] for _, u in parts])


def output_lower_bounds(state: BoundState, C: torch.Tensor, record: dict | None = None) -> torch.Tensor:
    """Lower bounds (B, m) of C y for the graph output y, C of shape (B, m, n_out), using the
    state's optimisable parameters (alphas, split multipliers)."""
    graph = state.graph
    C = C.reshape(C.shape[0], C.shape[1], *graph.output_shape)
    return backward(state, graph.output_name, C, record, use_parameters=True)
