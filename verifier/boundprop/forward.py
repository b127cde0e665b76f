"""Forward-mode linear bounds: every tensor gets lower and upper linear functions of the model
input, A x + b, pushed through the graph in topological order. Each costs O(n_in) per neuron,
so for low-dimensional inputs this beats the backward pass (O(#neurons) per neuron) by far;
the inputs of nonlinear nodes take the tighter of these and IBP.
"""
from __future__ import annotations

import torch

from verifier.boundprop.engine import BoundState, needs_tight_bounds
from verifier.graph.ir import Graph
from verifier.ops import RULES


def concretize(a: torch.Tensor, b: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, upper: bool):
    """Extreme over the box of A x + b, with A (B, n, *shape): (B, *shape)."""
    centre, radius = ((lo + hi) / 2).flatten(1), ((hi - lo) / 2).flatten(1)
    flat = a.reshape(*a.shape[:2], -1)
    mid = torch.einsum("bns,bn->bs", flat, centre)
    spread = torch.einsum("bns,bn->bs", flat.abs(), radius)
    value = mid + spread if upper else mid - spread
    return value.reshape(b.shape) + b


def forward_bounds(graph: Graph, lo: torch.Tensor, hi: torch.Tensor, deadline_check=None) -> BoundState:
    """A BoundState whose nonlinear-node inputs carry forward-mode (and IBP) bounds.
    deadline_check, when given, is called after each node (it raises to stop)."""
    state = BoundState(graph, lo, hi)
    state.deadline_check = deadline_check
    n, batch = graph.input_size, state.batch
    eye = torch.eye(n, dtype=lo.dtype, device=lo.device).expand(batch, n, n)
    eye = eye.reshape(batch, n, *graph.input_shape)
    zero = lo.new_zeros(batch, *graph.input_shape)
    fns = {graph.input_name: (eye, zero, eye, zero)}
    targets = needs_tight_bounds(graph)
    readers = _reader_counts(graph)
    for node in graph.nodes:
        state.set_bounds(node.name, *state.ibp_node(node))
        fns[node.name] = _with_rounding(RULES[node.op].forward_linear(node, [fns[i] for i in node.inputs], state),
                                        state.rounding(node))
        if node.name in targets:
            a_lo, b_lo, a_up, b_up = fns[node.name]
            l, u = state.bounds[node.name]
            state.set_bounds(node.name, torch.fmax(l, concretize(a_lo, b_lo, state.lo, state.hi, False)),
                             torch.fmin(u, concretize(a_up, b_up, state.lo, state.hi, True)))
        for name in node.inputs:  # free functions nobody reads any more
            readers[name] -= 1
            if readers[name] == 0:
                fns.pop(name, None)
        state.check_time()
    return state


def forward_multiply_adds(graph) -> float:
    """Multiply-adds per box of forward mode: a lower and an upper linear function of the n_in
    inputs through every node."""
    return float(2 * graph.input_size * graph.multiply_adds())


def _with_rounding(fns, r):
    """The linear functions moved apart by the node's float32 rounding bound r."""
    if r is None:
        return fns
    a_lo, b_lo, a_up, b_up = fns
    return a_lo, b_lo - r, a_up, b_up + r


def _reader_counts(graph: Graph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.nodes:
        for name in node.inputs:
            counts[name] = counts.get(name, 0) + 1
    return counts
