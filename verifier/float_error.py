"""How far the network as onnxruntime runs it (float32) can stray from the real-valued network.

Every unsat answer covers both: no input of the box violates the property in the real-valued
network, and no float32 input of the box violates it in the float32 network that onnxruntime
runs. Each op bounds the float32 rounding of its own result (`Rule.float_error` with no input
error, beside its other rules in verifier/ops/), by forward error analysis (Higham, Thm 3.5):
a float32 dot product of length n with a bias is off by at most gamma_{n+1} (|w|.|x| + |b|)
whatever the summation order (we take gamma_{n+3}: Gemm's alpha, and the rounding of weights
into which onnxruntime folds a following BatchNormalization); ReLU, MaxPool and the
shape ops are exact; sigmoid and tanh add onnxruntime's approximation error. Magnitudes come
from valid bounds of the node's inputs. Matmuls the loader merged keep the rounding terms of
the chain onnxruntime computes (a merged product would hide the rounding of large
intermediate values that cancel later).

Two uses:
- `local_rounding` gives each node's bound r. Bound propagation (verifier/boundprop) treats r as a
  perturbation of the node's result, so its bounds hold for the real network and the
  float32 one alike, and cancellation is accounted for as CROWN accounts for it.
- `output_error` pushes the errors forward through the graph (|W| times the input error, plus
  r) to a bound e on |y32 - y| per output: what the exact stages need, which decide the
  real-valued network (z3, the SDP). It compounds with depth, so these stages only decide
  where eps = |C| e is small.
`row_margins` adds the float64 floor RELATIVE_FLOOR (1 + |d| + |C| |y|) for the rounding of
the bound computation itself.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from verifier.graph.ir import Graph
from verifier.ops import RULES
from verifier.ops.base import Rule

RELATIVE_FLOOR = 1e-6


class NoErrorRule(Exception):
    """An op of the graph has no float32 error rule: no unsat is possible."""


_charging = [True]


@contextmanager
def real_valued_network():
    """Within it, bound propagation charges no float32 rounding: its bounds are of the
    real-valued network alone (for tests and measurements that compare with exact values;
    no decision may use them)."""
    _charging.append(False)
    try:
        yield
    finally:
        _charging.pop()


def charging_rounding() -> bool:
    """False within real_valued_network()."""
    return _charging[-1]


def local_rounding(node, bounds_of) -> torch.Tensor | None:
    """The float32 rounding bound of the node's result (B, *shape), from the bounds of its
    inputs (float32 values included; bounds_of: name -> (l, u)); None for exact ops and for ops
    with no rule (see missing_error_rules). A composite op the loader expanded
    (graph/composite.py) rounds in one piece, as onnxruntime computes it: the expansion's last
    node carries the original op's bound, its other nodes none."""
    if "within" in node.attrs:
        return None
    node = node.attrs.get("computes", node)
    rule = RULES[node.op]
    if rule.exact:
        return None
    bounds = [bounds_of(i) for i in node.inputs]
    magnitudes = [torch.maximum(l.abs(), u.abs()) for l, u in bounds]
    extra = (bounds,) if rule.uses_input_bounds else ()
    try:
        r = rule.float_error(node, [torch.zeros_like(m) for m in magnitudes], magnitudes, *extra)
    except NotImplementedError:
        return None
    r = torch.as_tensor(r, dtype=magnitudes[0].dtype, device=magnitudes[0].device)
    # 0 * inf in a rule (a zero input error times an unbounded magnitude) is NaN: no bound at all
    return r.nan_to_num(nan=float("inf"))


def missing_error_rules(graph: Graph) -> list[str]:
    """The ops of the graph with no float32 error rule, named for messages."""
    return [f"{node.op} (node '{node.onnx_name or node.name}')" for node in graph.execution().nodes
            if type(RULES[node.op]).float_error is Rule.float_error]


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
    error = {graph.input_name: torch.zeros_like(l)}  # a float32 input of the box is exact
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


def decision_floor(d: np.ndarray) -> np.ndarray:
    """eps per row for bounds from bound propagation, which already charge float32 rounding:
    the float64 floor alone. (The float64 rounding of the bound computation is a billionth of
    the float32 rounding charged for the same sums, so it adds nothing more.)"""
    return RELATIVE_FLOOR * (1.0 + np.abs(d))


def row_margins(error: np.ndarray, magnitude: np.ndarray, C: np.ndarray, d: np.ndarray) -> np.ndarray:
    """eps per spec row for the exact stages, which decide the real-valued network (see the
    module docstring); C (m, n_out), d (m,)."""
    absC = np.abs(np.asarray(C, dtype=np.float64))
    return (_weighted(absC, error)
            + RELATIVE_FLOOR * (1.0 + np.abs(d) + _weighted(absC, magnitude)))


def _weighted(absC: np.ndarray, values: np.ndarray) -> np.ndarray:
    """absC @ values, where an infinite value counts only in the rows that read it."""
    with np.errstate(invalid="ignore"):
        return np.where(absC > 0, absC * values, 0.0).sum(1)
