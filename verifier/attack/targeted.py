"""Neuron-targeted PGD: counterexamples hidden behind units whose gradient vanishes.

A unit that is inactive (ReLU) or saturated (sigmoid, tanh) everywhere but in a small part of
the box passes no gradient to the margin, so plain PGD cannot see what lies behind it. The
relaxation does: CROWN's backward pass gives each unit's output a coefficient lam in the
margin's lower bound, and |lam| times the range the unit's output can take scores how much the
unit could lower the margin (as BaBSR scores a ReLU split). The best-scoring unstable units
become targets; each target's restarts minimise

    margin + hinge(target's pre-activation on the side that lowers the margin)
           + sum_i |W_i| hinge(feeder i's pre-activation on the side that raises the target)

(each term relative to its size at the start), where the feeders are the unstable units of the
activation layers the target reads directly (W: the affine map between them, found by autograd
with every activation output cut loose). The hinges are piecewise linear in the
pre-activations, so they steer even where the activations are flat: a ReLU unit is pushed
active, a saturated sigmoid's inputs are pulled to its steep side. This is PGD inside the
subdomain that splitting the target (a ReLU split, or its S-shaped analogue at 0) would open.
The box corners nearest to the runs are tried as they go (hidden corners).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from verifier.attack.pgd import disjunct_tensors, pgd_steps
from verifier.ops import RULES
from verifier.ops.activation import Relu, SShaped


SNAP_EVERY = 5  # steps between tries of the nearest box corners


@dataclass
class Targets:
    """T targets: the disjunct each one attacks (T,), and per activation node the hinge
    coefficients Q (T, size) on its pre-activation: a hinge |Q| * relu(-sign(Q) * pre)."""

    which: torch.Tensor
    coefficients: dict[str, torch.Tensor]

    def __len__(self):
        return len(self.which)


def activation_nodes(graph):
    """The units that switch at 0: ReLU, and the S-shaped ones at their midpoint."""
    return [n for n in graph.nodes if isinstance(RULES[n.op], (Relu, SShaped))]


def unit_scores(state, lams: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """(m, size) per activation node: |lam| x the unit's output range, for unstable units
    (-inf elsewhere): what moving the unit could do to each row's lower bound."""
    scores = {}
    for node in activation_nodes(state.graph):
        lam = lams.get(node.name)
        if lam is None:
            continue
        l, u = (t[0].flatten() for t in state.bounds[node.inputs[0]])
        fn = RULES[node.op].forward
        reach = fn(node, u) - fn(node, l)
        score = lam[0].flatten(1).abs() * reach
        scores[node.name] = torch.where((l < 0) & (u > 0), score, torch.full_like(score, float("-inf")))
    return scores


def choose_targets(graph32, state, C: torch.Tensor, owner: torch.Tensor, count: int) -> Targets | None:
    """Up to `count` (row, unit) targets with the best scores, taken layer by layer (state: the
    root's CROWN bounds of one box; C (m, n_out) and owner (m,) the spec's stacked rows)."""
    from verifier.boundprop.engine import output_lower_bounds

    nodes = activation_nodes(state.graph)
    record = {n.name: None for n in nodes}
    output_lower_bounds(state, C.to(state.lo.dtype).unsqueeze(0), record)
    scores = unit_scores(state, {k: v for k, v in record.items() if v is not None})
    nodes = [n for n in nodes if n.name in scores]
    if not nodes:
        return None
    flat = torch.cat([scores[n.name] for n in nodes], 1).cpu()  # (m, all units); targets are built on the CPU
    best = _round_robin(flat, [scores[n.name].shape[1] for n in nodes], count)
    if len(best) == 0:
        return None
    rows, units = best // flat.shape[1], best % flat.shape[1]
    lam = torch.cat([record[n.name][0].flatten(1) for n in nodes], 1).cpu()
    sides = -torch.sign(lam[rows, units]).float()  # +1: raising the unit lowers the row's bound
    return Targets(owner.cpu()[rows].to(torch.long), _hinge_coefficients(graph32, state, nodes, units, sides))


def _round_robin(flat: torch.Tensor, sizes: list[int], count: int) -> torch.Tensor:
    """Flat indices into flat (m, units) of up to `count` finite scores: each layer's best, then
    each layer's second best, and so on, the layers nearest the output first. Scores are not
    comparable across layers (a wide saturated layer outscores the one unit that matters)."""
    ranked = []
    for part, offset in zip(flat.split(sizes, 1), torch.tensor([0] + sizes[:-1]).cumsum(0)):
        order = part.flatten().argsort(descending=True)
        order = order[torch.isfinite(part.flatten()[order])][:count]
        ranked.append((order // part.shape[1]) * flat.shape[1] + offset + order % part.shape[1])
    ranked.reverse()
    longest = max((len(r) for r in ranked), default=0)
    padded = torch.stack([torch.cat([r, r.new_full((longest - len(r),), -1)]) for r in ranked], 1)
    picks = padded.flatten()
    return picks[picks >= 0][:count]


def _hinge_coefficients(graph32, state, nodes, units, sides) -> dict[str, torch.Tensor]:
    """Q (T, size) per pre-activation for the targets (flat indices over the units of `nodes`,
    with their sides): the target's own hinge and its feeders', weighted by the direct affine
    weights, all in units of the target pre-activation's range."""
    bounds = [tuple(t[0].flatten().float().cpu() for t in state.bounds[n.inputs[0]]) for n in nodes]
    ranges = torch.cat([(u - l).clamp(min=1e-12) for l, u in bounds])
    unstable = [((l < 0) & (u > 0)).float() for l, u in bounds]
    scale = sides / ranges[units]  # (T,)
    sizes = [len(l) for l, _ in bounds]
    own = torch.zeros(len(units), sum(sizes))
    own[torch.arange(len(units)), units] = scale
    weights = _direct_weights(graph32, nodes, units)
    Q = {}
    for node, part, flags in zip(nodes, own.split(sizes, 1), unstable):
        feeders = weights.get(node.name)
        Q[node.inputs[0]] = part if feeders is None else part + feeders * scale.unsqueeze(1) * flags
    return Q


@torch.enable_grad()
def _direct_weights(graph32, nodes, units) -> dict[str, torch.Tensor]:
    """d pre(target) / d act(unit) (T, size) per activation node, through affine paths only
    (every activation output is cut loose from its input), taken at the origin: the graph
    between activations is affine, so any point gives the same weights."""
    T = len(units)
    x = torch.zeros(T, *graph32.input_shape, dtype=graph32.dtype, device=graph32.device)
    values, leaves = {graph32.input_name: x}, {}
    names = {n.name for n in nodes}
    for node in graph32.nodes:
        out = RULES[node.op].forward(node, *(values[i] for i in node.inputs))
        if node.name in names:
            out = out.detach().requires_grad_(True)
            leaves[node.name] = out
        values[node.name] = out
    pre = torch.cat([values[n.inputs[0]].flatten(1) for n in nodes], 1)
    chosen = pre[torch.arange(T), units.to(pre.device)]
    if not chosen.requires_grad:  # every target in the first activation layer: it has no feeders
        return {}
    grads = torch.autograd.grad(chosen.sum(), list(leaves.values()), allow_unused=True)
    return {name: g.detach().flatten(1).float().cpu() for name, g in zip(leaves, grads) if g is not None}


def targeted_candidates(graph32, region, targets: Targets, restarts: int, steps: int, deadline: float,
                        seed: int = 0):
    """Yield candidate inputs (numpy float64) from `restarts` runs per target, started at
    uniform random points of the box."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    lo = torch.as_tensor(region.lo, dtype=graph32.dtype, device=graph32.device)
    hi = torch.as_tensor(region.hi, dtype=graph32.dtype, device=graph32.device)
    target_of = torch.arange(len(targets)).repeat_interleave(restarts)
    x = lo + (hi - lo) * torch.rand(len(target_of), lo.numel(), generator=gen).to(lo)
    hinges = {name: q[target_of] for name, q in targets.coefficients.items()}
    # every other run ignores the margin and only walks into the subdomain: where the hidden
    # violation is a sliver (a corner pocket), the margin's pull away from it wins otherwise
    margin_weight = (torch.arange(len(target_of)) % 2).to(lo)
    yield from hinged_candidates(graph32, region, x, targets.which[target_of], hinges, steps, deadline,
                                 margin_weight, SNAP_EVERY)


def hinged_candidates(graph32, region, x, which, hinges: dict[str, torch.Tensor], steps: int, deadline: float,
                      margin_weight: torch.Tensor | None = None, snap_every: int = 0):
    """PGD from x (N, n) on disjunct `which` (N,) of the region, each run kept on the side of
    its hinges (pre-activation name -> Q (N, size): |Q| relu(-sign(Q) pre) each): inside a
    subdomain of sign constraints on neurons; margin_weight (N,) and snap_every: see pgd_steps.
    Yields candidate inputs (numpy float64)."""
    device, dtype = graph32.device, graph32.dtype
    lo = torch.as_tensor(region.lo, dtype=dtype, device=device)
    hi = torch.as_tensor(region.hi, dtype=dtype, device=device)
    C, d = disjunct_tensors(region, device, dtype)
    Q = {name: q.to(device, dtype) for name, q in hinges.items()}

    def penalty(values):
        return sum((q.abs() * torch.relu(-torch.sign(q) * values[name].flatten(1))).sum(1) for name, q in Q.items())

    yield from pgd_steps(graph32, C, d, which.to(device), x.to(device, dtype), lo, hi, steps, deadline,
                         penalty=penalty, snap_every=snap_every,
                         margin_weight=None if margin_weight is None else margin_weight.to(device, dtype))
