"""The margin rule: how far float32 execution can stray from the exact real network.

z3 decides the network over exact rationals of its float64 weights; onnxruntime runs it in
float32. For every input x of the box, `output_error` bounds |y32(fl32(x)) - y(x)| per output,
where y is the exact real network and y32 the float32 evaluation of the input rounded to
float32, by the standard forward error analysis (Higham, Thm 3.5): a float32 dot product of
length n with bias satisfies |fl(w.x + b) - (w.x + b)| <= gamma_{n+1} (|w|.|x| + |b|),
gamma_k = k u / (1 - k u), u = 2^-24, whatever the summation order (FMA only helps); errors
already in x pass through |w|. ReLU, MaxPool and the shape ops are 1-Lipschitz and exact.
Magnitudes |x| come from the (valid) bounds of each node.

Rule used by the stage, with eps_i = `row_margins` (a safety factor of 2 over the analysis,
for ops the loader fused or folded, plus a relative floor like the one in verifier.decide):
- unsat: z3 must prove that no real x of the domain has C_i y(x) <= d_i + eps_i for all rows
  i of any disjunct. A float32 counterexample x32 lies in the domain, and its float32 output
  differs from y(x32) by at most eps per row, so it would satisfy the relaxed query: none exists.
- sat: a z3 model is only a candidate; it is reported after onnxruntime replay
  (Query.confirm). If the replay fails (a point on the boundary), z3 is asked again with
  C y <= d - eps, whose models violate in float32 too; if that query is unsat, the only
  counterexamples lie within the margin and the answer is unknown.
"""
from __future__ import annotations

import numpy as np
import torch

from verifier.graph.ir import Graph
from verifier.ops import RULES

UNIT_ROUNDOFF = 2.0 ** -24
SAFETY = 2.0
RELATIVE_FLOOR = 1e-6


def gamma(n: int) -> float:
    return n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)


def _fan_in(node) -> int:
    if node.op == "matmul":
        return int(node.tensors["W"].shape[0])
    if node.op == "conv":
        return int(node.tensors["W"][0].numel())
    return 1


@torch.no_grad()
def output_error(graph: Graph, bounds: dict) -> tuple[np.ndarray, np.ndarray]:
    """(error bound, magnitude bound) per flat output; bounds: node -> (l, u) with batch 1."""
    mag = {k: torch.maximum(l.abs(), u.abs()).to(torch.float64).reshape(1, *graph.shape_of(k))
           for k, (l, u) in ((k, (torch.as_tensor(v[0]), torch.as_tensor(v[1])))
                             for k, v in bounds.items())}
    err = {graph.input_name: mag[graph.input_name] * UNIT_ROUNDOFF}
    for node in graph.nodes:
        rule = RULES[node.op]
        e = [err[i] for i in node.inputs]
        if node.op in ("matmul", "conv", "affine"):
            m_in = mag[node.inputs[0]]
            bias = rule.forward(node, torch.zeros_like(m_in)).abs()
            err[node.name] = (rule.forward_abs(node, e[0])
                              + gamma(_fan_in(node) + 1) * (rule.forward_abs(node, m_in) + bias))
        elif node.op == "add":
            sizes = [mag[i] for i in node.inputs]
            err[node.name] = e[0] + e[1] + UNIT_ROUNDOFF * (sizes[0] + sizes[1])
        elif node.op == "pad":
            err[node.name] = rule.linear_part(node, e[0])
        elif node.op in ("relu", "maxpool", "reshape", "transpose", "slice", "concat"):
            err[node.name] = rule.forward(node, *e)
        else:
            raise ValueError(f"no float error rule for op {node.op}")
    out = graph.output_name
    return err[out].reshape(-1).numpy(), mag[out].reshape(-1).numpy()


def row_margins(graph: Graph, bounds: dict, C: np.ndarray, d: np.ndarray) -> np.ndarray:
    """eps per spec row (see the module docstring)."""
    error, magnitude = output_error(graph, bounds)
    absC = np.abs(C)
    return SAFETY * absC @ error + RELATIVE_FLOOR * (1.0 + np.abs(d) + absC @ magnitude)
