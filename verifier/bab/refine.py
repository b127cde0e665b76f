"""Tighter bounds for the inputs of the early ReLU layers, by branch and bound on the neurons
before them.

On deep MLPs under wide boxes the output bound is lost in the first layers: each unstable
neuron's relaxation loosens the next layer's bounds, and the looseness compounds (mnist_fc
256x6 at eps 0.05: alpha-CROWN leaves 205 of layer 4's neurons unstable where PGD finds 2,
and the output bound at -525). Each unstable neuron of a layer gets two small beta-CROWN
trees of its own (for its lower and its upper bound) over splits of the neurons before it,
all of them bounded in one batch per round, as alpha-beta-CROWN refines the same bounds with
a MIP solver. Every domain's bound is a float64 certificate (relu_split.bound_domains), and a
neuron's new bound is the worst over the leaves of its tree, so the refined bounds are as
sound as CROWN's.
"""
from __future__ import annotations

import time

import torch

from verifier.bab.relu_split import Domains, bound_domains, root_domains, split_children
from verifier.boundprop.engine import BoundState
from verifier.boundprop.optimize import Spec, relu_nodes
from verifier.graph.evaluate import evaluate
from verifier.graph.ir import Graph

ITERATIONS = 10  # alpha/beta steps per round
WORST_PER_TREE = 4  # domains split per tree and round
SETTLED = 0.1  # a tree whose worst leaf is this close (relatively) to a value taken stops
_MEMORY_ELEMENTS = 2 ** 26  # budget of the domains' tensors (bounds, splits, slopes, rows...)


def refinable_layers(state: BoundState) -> list[str]:
    """The inputs of the ReLUs that have ReLUs before them, in order, where the roots of all
    their trees (two per unstable neuron, one box) fit the memory budget."""
    layers = []
    for relu in relu_nodes(state):
        name = relu.inputs[0]
        sub = _state_below(state, name)
        trees = 2 * int(_unstable(*state.bounds[name]).sum())
        if relu_nodes(sub) and 0 < trees * _domain_elements(sub) <= _MEMORY_ELEMENTS:
            layers.append(name)
    return layers


def unstable_count(state: BoundState) -> int:
    """Unstable ReLU neurons in all layers (one box)."""
    return sum(int(_unstable(*state.bounds[n.inputs[0]]).sum()) for n in relu_nodes(state))


def _unstable(l: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return (l < 0) & (u > 0)


def _domain_elements(sub: BoundState) -> int:
    """Roughly how many tensor elements a domain of the sub-graph holds."""
    return 8 * sum(n.size for n in relu_nodes(sub)) + sub.graph.input_size + sub.graph.output_size


def refine_node(state: BoundState, name: str, deadline: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds (l, u) of node `name`'s elements (one box) at least as tight as the state's,
    branching on the ReLUs before it until the deadline (time.monotonic())."""
    l, u = state.bounds[name]
    unstable = _unstable(l, u).flatten().nonzero().flatten()
    sub = _state_below(state, name)
    if unstable.numel() == 0 or not relu_nodes(sub):
        return l, u
    k = unstable.numel()
    rows = torch.zeros(2 * k, l[0].numel(), dtype=l.dtype, device=l.device)
    rows[torch.arange(k), unstable] = 1.0
    rows[torch.arange(k) + k, unstable] = -1.0
    start = torch.cat([l.flatten()[unstable], -u.flatten()[unstable]])
    worst = _grow_trees(sub, rows, start, deadline)
    flat_l, flat_u = l.flatten().clone(), u.flatten().clone()
    flat_l[unstable] = torch.maximum(flat_l[unstable], worst[:k])
    flat_u[unstable] = torch.minimum(flat_u[unstable], -worst[k:])
    return flat_l.reshape(l.shape), flat_u.reshape(u.shape)


def _grow_trees(sub: BoundState, rows: torch.Tensor, start: torch.Tensor, deadline: float) -> torch.Tensor:
    """For each row r, a lower bound of rows[r] . h (h the sub-graph's output) over the box:
    the worst leaf of a tree of ReLU splits grown from the root, whose bound is `start`.
    A leaf whose bound reaches 0 is closed (the neuron is stable there); a tree stops growing
    once its worst leaf is within SETTLED of a value the neuron takes."""
    trees = len(rows)
    tree = torch.arange(trees, device=rows.device)
    spec = _spec(rows[tree])
    roots = root_domains(sub, spec).select(torch.zeros_like(tree))
    roots.lower = start.unsqueeze(1)
    domains = bound_domains(sub, spec, roots, ITERATIONS)
    if sub.recorder is not None:  # a certificate: every bounded domain of the trees
        sub.recorder.lemma_domains(rows, tree, domains)
    seen = _least_values_at_corners(sub, rows, tree, domains)
    closed_worst = start.new_full((trees,), float("inf"))
    pre_activation = {n.name: n.inputs[0] for n in relu_nodes(sub)}
    max_domains = _MEMORY_ELEMENTS // _domain_elements(sub)
    while len(domains) and time.monotonic() < deadline:
        lower = domains.lower[:, 0]
        open_ = lower < 0
        worst = _least_per_tree(tree, lower, trees)
        growing = (seen - worst > SETTLED * worst.abs())[tree]
        pick = _worst_of_each_tree(tree, lower, domains.branchable() & growing & open_)
        if pick.numel() == 0 or int(open_.sum()) + pick.numel() > max_domains:
            break
        closed_worst.scatter_reduce_(0, tree[~open_], lower[~open_], "amin")
        keep = open_.clone()
        keep[pick] = False
        chosen = domains.select(pick)
        neuron = torch.cat([s.flatten(1) for s in chosen.scores.values()], 1).argmax(1)
        children = split_children(chosen, neuron, pre_activation)
        child_tree = tree[pick].repeat(2)
        children = bound_domains(sub, _spec(rows[child_tree]), children, ITERATIONS)
        if sub.recorder is not None:
            sub.recorder.lemma_domains(rows, child_tree, children)
        seen = torch.minimum(seen, _least_values_at_corners(sub, rows, child_tree, children))
        domains = Domains.concat([domains.select(keep), children])
        tree = torch.cat([tree[keep], child_tree])
    return torch.minimum(_least_per_tree(tree, domains.lower[:, 0], trees), closed_worst)


def _least_per_tree(tree: torch.Tensor, values: torch.Tensor, trees: int) -> torch.Tensor:
    return values.new_full((trees,), float("inf")).scatter_reduce(0, tree, values, "amin")


@torch.no_grad()
def _least_values_at_corners(sub: BoundState, rows: torch.Tensor, tree: torch.Tensor, domains: Domains):
    """Per tree, the least value of its row at the box corners that minimise its domains'
    linear bounds (values the neuron takes: the true minimum is at most that)."""
    lo, hi = sub.lo.flatten(1), sub.hi.flatten(1)
    x = torch.where(domains.input_lam[:, 0] > 0, lo, hi)
    h = evaluate(sub.graph, x).flatten(1)
    return _least_per_tree(tree, (rows[tree] * h).sum(1), len(rows))


def _worst_of_each_tree(tree: torch.Tensor, lower: torch.Tensor, branchable: torch.Tensor) -> torch.Tensor:
    """Indices of up to WORST_PER_TREE branchable domains with the lowest bounds in each tree."""
    candidates = branchable.nonzero().flatten()
    by_bound = candidates[lower[candidates].argsort()]
    by_tree = by_bound[tree[by_bound].argsort(stable=True)]
    t = tree[by_tree]
    first = torch.searchsorted(t, t, right=False)
    rank = torch.arange(len(t), device=t.device) - first
    return by_tree[rank < WORST_PER_TREE]


def _spec(rows: torch.Tensor) -> Spec:
    """One row per domain, threshold 0: a domain is closed once its bound is non-negative."""
    zero = rows.new_zeros(1)
    return Spec(rows.unsqueeze(1), zero, torch.zeros(1, dtype=torch.long, device=rows.device), 1)


def _state_below(state: BoundState, name: str) -> BoundState:
    """The state's box and bounds on the sub-graph that computes node `name`."""
    graph = state.graph
    needed, nodes = {name}, []
    for node in reversed(graph.nodes):
        if node.name in needed:
            nodes.append(node)
            needed.update(node.inputs)
    sub_graph = Graph(graph.input_name, graph.input_shape, name, nodes[::-1], graph.onnx_input_dtype, graph.path)
    sub = BoundState(sub_graph, state.lo, state.hi)
    sub.bounds.update({k: v for k, v in state.bounds.items() if k in needed})
    sub.deadline_check = state.deadline_check
    sub.recorder = state.recorder
    return sub
