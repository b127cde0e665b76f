"""Branching beyond ReLU (GenBaB, Shi et al. 2024): cut the input interval of any nonlinear node.

A cut splits a domain where an input element x of a sigmoid, tanh, exp, sin, cos, product, ...
has bounds [l, u] into [p, u] and [l, p]: the two children cover it, and each child's
relaxations of the nodes reading x are built from its own, narrower, interval. The new bound is
also a constraint of the child (x >= p or x <= p) that the layers before x do not know, so it
gets a multiplier in the backward pass, as beta-CROWN's split constraints do
(verifier.boundprop.optimize.cut_terms). ReLU splits stay as they are (relu_split.py); both
kinds of candidates compete on their estimated gain in the bound (see verifier/ops/branching.py
for the estimate, and each op's branch_gains for the point it cuts at).
"""
from __future__ import annotations

import torch

from verifier.boundprop.optimize import LOWER_CUT, UPPER_CUT
from verifier.ops import RULES

# Elements narrower than this (relative to their magnitude) are not cut again.
_NARROWEST = 1e-6


def cut_nodes(graph) -> list:
    """The nonlinear nodes, other than ReLU, whose inputs branch and bound may cut."""
    return [n for n in graph.nodes if n.op != "relu" and RULES[n.op].branchable]


def cut_tensors(graph) -> list[str]:
    """The tensors branch and bound may cut: the inputs of cut_nodes, each once."""
    return list(dict.fromkeys(name for node in cut_nodes(graph) for name in node.inputs))


def cut_scores(state, open_rows: torch.Tensor, record: dict) -> tuple[dict, dict]:
    """Per cut tensor, the estimated gain (B, *shape) of cutting each element (-inf where not
    worth it) and the point to cut at, from the lams `record` holds on each node's output.
    A tensor read by several nodes sums their gains and cuts where the largest one would."""
    gains, points, best = {}, {}, {}
    for node in cut_nodes(state.graph):
        lam = record.get(node.name)
        if lam is None:
            continue
        rows = open_rows.reshape(*open_rows.shape, *([1] * (lam.dim() - 2))).to(lam.dtype)
        weights = ((lam.clamp(min=0) * rows).sum(1), (-lam.clamp(max=0) * rows).sum(1))
        for name, found in zip(node.inputs, RULES[node.op].branch_gains(node, weights, state)):
            if found is None:
                continue
            gain, point = (t.to(lam.dtype) for t in found)
            if name not in gains:
                gains[name], points[name], best[name] = gain, point, gain
                continue
            gains[name] = gains[name] + gain
            points[name] = torch.where(gain > best[name], point, points[name])
            best[name] = torch.maximum(gain, best[name])
    scores = {name: _worth_cutting(state, name, gain, points[name]) for name, gain in gains.items()}
    return scores, points


def _worth_cutting(state, name: str, gain: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    l, u = state.bounds[name]
    wide = (u - l) > _NARROWEST * (1 + l.abs() + u.abs())
    usable = wide & (point > l) & (point < u) & torch.isfinite(gain) & (gain > 0)
    return torch.where(usable, gain, torch.full_like(gain, float("-inf")))


def cut_children(first, second, name: str, rows: torch.Tensor, cols: torch.Tensor, point: torch.Tensor):
    """Cut element cols[i] of tensor `name` at point[i] in domain rows[i]: `first` (a copy of
    the domains) keeps [p, u], `second` keeps [l, p]; both in place."""
    n = len(first)
    for child, bit in ((first, LOWER_CUT), (second, UPPER_CUT)):
        cuts = child.cuts[name].clone()
        cuts.view(n, -1)[rows, cols] |= bit
        child.cuts[name] = cuts
        l, u = (t.clone() for t in child.bounds[name])
        inside = torch.minimum(torch.maximum(point.to(l.dtype), l.view(n, -1)[rows, cols]), u.view(n, -1)[rows, cols])
        (l if bit == LOWER_CUT else u).view(n, -1)[rows, cols] = inside
        child.bounds[name] = (l, u)
