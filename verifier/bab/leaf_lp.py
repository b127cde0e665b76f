"""Exact answers for fully split leaves of ReLU branch and bound, by linear programming.

In a leaf every unstable ReLU is split, so on the leaf's inputs (the box, cut by the split
constraints s_j z_j(x) <= 0) the network is affine: y = A x + a, z = G x + g. An LP over that
polytope (scipy's HiGHS) then gives the exact minimum of each spec row. The LP only proposes:
- a minimiser below the threshold is a counterexample candidate, replayed like any other;
- an optimum above it is turned into split multipliers (beta = the LP's duals), and the bound
  is recomputed by the backward pass in float64, so unsat still goes through the one trusted
  decision. An empty leaf gets its certificate from the LP that maximises the constraints'
  slack, the same way.
"""
from __future__ import annotations

import numpy as np
import torch

from verifier.boundprop.engine import BoundState, backward, concretize_lower

_EMPTY_LEAF_WEIGHT = 1e6  # scale of the multipliers that certify an empty leaf


def affine_map(state: BoundState, node: str, rows: torch.Tensor):
    """Exact (A (k, n), a (k,)) with node[rows] = A x + a on the leaf (relaxations are exact)."""
    shape = state.shape_of(node)
    size = int(np.prod(shape)) if shape else 1
    C = state.lo.new_zeros(1, len(rows), size)
    C[0, torch.arange(len(rows)), rows] = 1.0
    record = {state.graph.input_name: None}
    lower = backward(state, node, C.reshape(1, len(rows), *shape), record, rounding=False)
    lam = record[state.graph.input_name]
    if lam is None:
        return np.zeros((len(rows), state.lo[0].numel())), lower[0].cpu().numpy()
    constant = lower - concretize_lower(lam, state.lo, state.hi)
    return lam.flatten(2)[0].cpu().numpy(), constant[0].cpu().numpy()


def split_constraints(state: BoundState, splits: dict, pre_activation: dict):
    """Rows S (p, n) and s (p,) with S x <= s for every split, and where each came from."""
    rows, rhs, origin = [], [], []
    for relu, split in splits.items():
        flat = split[0].flatten()
        chosen = flat.nonzero().flatten()
        if chosen.numel() == 0:
            continue
        G, g = affine_map(state, pre_activation[relu], chosen)
        sign = (-flat[chosen].double()).cpu().numpy()[:, None]  # s = -1 active, +1 inactive
        rows.append(sign * G)
        rhs.append(-(sign[:, 0] * g))
        origin += [(pre_activation[relu], int(i)) for i in chosen]
    n = state.lo[0].numel()
    if not rows:
        return np.zeros((0, n)), np.zeros(0), origin
    return np.concatenate(rows), np.concatenate(rhs), origin


def solve_leaf(state: BoundState, spec_C: torch.Tensor, splits: dict, pre_activation: dict):
    """LP per spec row. Returns (minimisers (m, n) or None rows, betas per row as dicts)."""
    from scipy.optimize import linprog  # 0.7 s to import; leaves are rare
    lo, hi = state.lo[0].flatten().cpu().numpy(), state.hi[0].flatten().cpu().numpy()
    S, s, origin = split_constraints(state, splits, pre_activation)
    A, a = affine_map(state, state.graph.output_name, torch.arange(spec_C.shape[1]))
    objective = spec_C.cpu().numpy() @ A
    minimisers, multipliers = [], []
    for row in objective:
        result = linprog(row, A_ub=S if len(S) else None, b_ub=s if len(S) else None,
                         bounds=list(zip(lo, hi)), method="highs")
        if result.status == 2:  # infeasible: certify emptiness instead
            return None, [_emptiness_multipliers(S, s, lo, hi, origin)] * len(objective)
        if result.status != 0:
            minimisers.append(None)
            multipliers.append({})
            continue
        minimisers.append(result.x)
        duals = -result.ineqlin.marginals if len(S) else np.zeros(0)
        multipliers.append(_by_node(np.clip(duals, 0, None), origin))
    return minimisers, multipliers


def _emptiness_multipliers(S, s, lo, hi, origin):
    """Weights mu >= 0 with mu.(S x - s) > 0 on the whole box: min t s.t. S x - s <= t."""
    from scipy.optimize import linprog
    n = S.shape[1]
    c = np.zeros(n + 1)
    c[-1] = 1.0
    A = np.hstack([S, -np.ones((len(S), 1))])
    result = linprog(c, A_ub=A, b_ub=s, bounds=list(zip(lo, hi)) + [(None, None)], method="highs")
    if result.status != 0:
        return {}
    return _by_node(np.clip(-result.ineqlin.marginals, 0, None) * _EMPTY_LEAF_WEIGHT, origin)


def betas_from(multipliers: list[dict], like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Split multipliers per row (from solve_leaf) as beta tensors shaped like `like` (1, m, *shape)."""
    betas = {name: torch.zeros_like(b) for name, b in like.items()}
    for row, by_node in enumerate(multipliers):
        for name, entries in by_node.items():
            flat = betas[name][0, row].view(-1)
            for index, value in entries:
                flat[index] = value
    return betas


def _by_node(values, origin):
    grouped: dict[str, list[tuple[int, float]]] = {}
    for (node, index), value in zip(origin, values):
        grouped.setdefault(node, []).append((index, float(value)))
    return grouped
