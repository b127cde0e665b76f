"""How far the network as onnxruntime runs it (float32) can stray from the real-valued network.

Every unsat answer covers both: no input of the box violates the property in the real-valued
network (the bounds are computed for it, in float64), and no float32 input of the box violates
it in the float32 network that onnxruntime runs. The second follows from the first once each
spec row beats its threshold by eps_i >= |C_i| e, where e bounds |y32(x) - y(x)| per output
for every input x of the box: y is the exact network, y32 its float32 execution.

`output_error` derives e by forward error analysis (Higham, Thm 3.5), one rule per op next to
its other rules (`Rule.float_error` in verifier/ops/): a float32 dot product of length n with a
bias is off by at most gamma_{n+1} (|w|.|x| + |b|) whatever the summation order, and errors
already in x pass through |w|; ReLU, MaxPool and the shape ops are exact and 1-Lipschitz;
sigmoid and tanh add onnxruntime's approximation error. Magnitudes come from valid bounds of
the exact network on the box (the root's, so e holds for every sub-box and every split) plus
the error already accumulated. The analysis runs on the graph as onnxruntime executes it, before
the loader's exact rewrites (two matmuls merged into one would hide the rounding of the first
one's large intermediate values). Hidden values can be large and cancel: the error scales
with them, not with the outputs.

`row_margins`: eps_i = SAFETY |C_i| e + RELATIVE_FLOOR (1 + |d_i| + |C_i| |y|), a safety
factor of 2 over the analysis (for onnxruntime's own fusions, such as a BatchNormalization
folded into the convolution before it, whose weights are then rounded once more), plus a floor
for the float64 rounding of the bound computation itself.
"""
from __future__ import annotations

import numpy as np
import torch

from verifier.graph.ir import Graph
from verifier.ops import RULES
from verifier.ops.base import UNIT_ROUNDOFF

SAFETY = 2.0
RELATIVE_FLOOR = 1e-6


class NoErrorRule(Exception):
    """An op of the graph has no float32 error rule: no unsat is possible."""


@torch.no_grad()
def output_error(graph: Graph, lo: np.ndarray, hi: np.ndarray,
                 known: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(error bound e, magnitude bound of the exact output) per flat output, over the box
    [lo, hi]. `known`: valid bounds node -> (l, u) (batch 1) of the exact network on this box,
    e.g. a CROWN state's; the analysis intersects them with its own interval bounds."""
    graph = graph.to(torch.float64, graph.device).execution()
    device = graph.device
    shape = (1, *graph.input_shape)
    l = torch.as_tensor(np.asarray(lo, dtype=np.float64), device=device).reshape(shape)
    u = torch.as_tensor(np.asarray(hi, dtype=np.float64), device=device).reshape(shape)
    bounds = {graph.input_name: (l, u)}
    magnitude = {graph.input_name: torch.maximum(l.abs(), u.abs())}
    error = {graph.input_name: magnitude[graph.input_name] * UNIT_ROUNDOFF}  # input rounded to float32
    known = known or {}
    for node in graph.nodes:
        rule = RULES[node.op]
        l, u = rule.ibp(node, *(bounds[i] for i in node.inputs))
        if node.name in known:
            kl, ku = (t[:1].to(l) for t in known[node.name])
            if kl.shape == l.shape:
                l, u = torch.maximum(l, kl), torch.minimum(u, ku)
        bounds[node.name] = (l, u)
        magnitude[node.name] = torch.maximum(l.abs(), u.abs())
        extra = ([bounds[i] for i in node.inputs],) if rule.uses_input_bounds else ()
        try:
            e = rule.float_error(node, [error[i] for i in node.inputs],
                                 [magnitude[i] + error[i] for i in node.inputs], *extra)
        except NotImplementedError as reason:
            raise NoErrorRule(f"{reason} (node '{node.onnx_name or node.name}')") from None
        error[node.name] = torch.nan_to_num(torch.as_tensor(e, dtype=torch.float64, device=device)
                                            .expand_as(l), nan=float("inf"))
    out = graph.output_name
    return (error[out].reshape(-1).cpu().numpy(),
            torch.nan_to_num(magnitude[out], nan=float("inf")).reshape(-1).cpu().numpy())


def row_margins(error: np.ndarray, magnitude: np.ndarray, C: np.ndarray, d: np.ndarray) -> np.ndarray:
    """eps per spec row (see the module docstring); C (m, n_out), d (m,)."""
    absC = np.abs(np.asarray(C, dtype=np.float64))
    return (SAFETY * _weighted(absC, error)
            + RELATIVE_FLOOR * (1.0 + np.abs(d) + _weighted(absC, magnitude)))


def _weighted(absC: np.ndarray, values: np.ndarray) -> np.ndarray:
    """absC @ values, where an infinite value counts only in the rows that read it."""
    with np.errstate(invalid="ignore"):
        return np.where(absC > 0, absC * values, 0.0).sum(1)
