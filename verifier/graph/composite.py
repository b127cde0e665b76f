"""Composite ops expanded, after loading, into ops that bound propagation handles.

The graph keeps the unexpanded nodes as the ones onnxruntime executes (Graph.execution_nodes),
so the float32 error analysis sees the computation onnxruntime actually does; in bound
propagation the expansion's last node carries the whole op's float32 rounding
(attrs['computes']: the original node), its other nodes (attrs['within']) none.

Softmax over the last axis becomes
    softmax(x)_i = 1 / sum_j exp(x_j - x_i):
a matmul forming every difference x_j - x_i, exp, a sum over j and a reciprocal. Each term of
the sum is one exp of one linear function of x, and the j = i term is exactly 1, so the
reciprocal's input lies in [1, n]. Measured against exp(x_i) * (1 / sum_j exp(x_j)), whose
product of two variables needs McCormick planes, this form gives tighter CROWN bounds (see
tests/test_math_ops.py and README).
"""
from __future__ import annotations

import numpy as np

from verifier.graph.ir import Graph, Node


def expand(nodes: list[Node]) -> list[Node]:
    """The nodes with every composite op replaced by its expansion (the same list when none)."""
    if not any(n.op in EXPANSIONS for n in nodes):
        return nodes
    out = []
    for node in nodes:
        out += EXPANSIONS[node.op](node) if node.op in EXPANSIONS else [node]
    return out


def difference_matrix(n: int) -> np.ndarray:
    """D (n, n * n) with (x @ D)[i * n + j] = x_j - x_i."""
    D = np.zeros((n, n, n))
    index = np.arange(n)
    D[index, :, index] = 1.0  # x_j in column (i, j): D[j, i, j]
    D[index, index, :] -= 1.0  # minus x_i: D[i, i, j]
    return D.reshape(n, n * n)


def _softmax(node: Node) -> list[Node]:
    shape, name, x = node.shape, node.name, node.inputs[0]
    n = shape[-1]

    def part(suffix, op, inputs, out_shape, tensors=None, attrs=None):
        return Node(f"{name}::{suffix}", op, inputs, tuple(out_shape), tensors or {},
                    {"within": name, **(attrs or {})}, node.onnx_name)

    # kept apart from the matmul before it (graph.simplify), so that the logits stay a node
    differences = part("differences", "matmul", [x], (*shape[:-1], n * n), {"W": difference_matrix(n)},
                       {"unmerged": True})
    pairs = part("pairs", "reshape", [differences.name], (*shape, n), attrs={"target": (*shape, n)})
    exps = part("exp", "exp", [pairs.name], (*shape, n))
    total = part("sum", "reducesum", [exps.name], shape, attrs={"axes": (len(shape),), "keepdims": False})
    share = Node(name, "reciprocal", [total.name], tuple(shape), {}, {"softmax_of": x, "computes": node},
                 node.onnx_name)
    return [differences, pairs, exps, total, share]


def without_softmax_head(graph: Graph) -> Graph | None:
    """The graph up to the logits of the softmax that produces its output, or None (no such
    softmax, or its logits merged away). Softmax keeps order, y_i >= y_j exactly when
    x_i >= x_j, so comparisons of outputs may be searched on the logits, whose gradients do
    not vanish where the softmax saturates."""
    out = graph.by_name.get(graph.output_name)
    logits = out.attrs.get("softmax_of") if out is not None else None
    names = [n.name for n in graph.nodes]
    if logits is None or logits not in names:
        return None
    return Graph(graph.input_name, graph.input_shape, logits, graph.nodes[: names.index(logits) + 1],
                 graph.onnx_input_dtype, graph.path)


EXPANSIONS = {"softmax": _softmax}
