"""A piecewise-linear network restricted to a (sub)domain, as linear real arithmetic with
case splits: the one encoding that both the z3 backend and the MILP backend read.

Exactness. Every coefficient and constant in the encoding is a float64 number taken at its
exact rational value (the loaded weights are float32 values, exact in float64), and no two
of them are ever combined in floating point:
- every node's value is an affine form A v + c over encoding variables v (sparse A);
- a linear op (matmul, conv, affine) is applied only to a *selection* form (each row one
  variable with coefficient 1, or a constant, each variable at most once), so its matrix,
  read off by applying the op to the identity, is copied into A without arithmetic; any
  other input is first *materialised*: fresh variables with the exact equalities v = A v + c;
- shape ops (reshape, transpose, slice, concat, pad) only move rows;
- add sums two selection forms (coefficients +-1 and 2 are exact);
- a nonzero constant (a ReLU whose inputs are all fixed, padding) that reaches a linear op or
  an add becomes a fixed variable, so constants are never combined in floating point either.

Nonlinear ops. A ReLU whose pre-activation the (widened) bounds prove stable is replaced by
its linear piece; a split neuron of a BaB subdomain by its split's piece plus the split's
exact constraint (z >= 0 or z <= 0); every other one becomes a case split (`Relu`). A MaxPool
window becomes its one undominated input, or a case split over the undominated ones. Any
other nonlinear op (sigmoid, tanh, ...) makes `encode` raise `Decline` with the reason.

Bounds from CROWN are float64 computations; before they are used (stability, big-M, the
triangle cut) they are widened by `_WIDEN_REL` relative plus `_WIDEN_ABS` absolute, far above
float64 rounding in the bound computation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from verifier.graph.ir import Graph
from verifier.ops import RULES

_WIDEN_REL = 1e-7
_WIDEN_ABS = 1e-9
_LINEAR_OPS = ("matmul", "conv", "affine")
_SHAPE_OPS = ("reshape", "transpose", "slice", "concat", "pad")
_MAX_DENSE = 20_000_000  # entries of one linear op's probed matrix


class Decline(Exception):
    """The encoding cannot represent this network exactly; the message says why."""


@dataclass
class Relu:
    z: np.ndarray  # (k,) pre-activation variables of the unstable neurons
    y: np.ndarray  # (k,) their output variables
    lower: np.ndarray  # (k,) widened bounds of z, lower < 0 < upper
    upper: np.ndarray


@dataclass
class MaxWindow:
    out: int  # output variable
    inputs: list[int]  # undominated input variables
    lower: np.ndarray  # their widened bounds
    upper: np.ndarray


@dataclass
class Encoding:
    n_inputs: int  # variables 0 .. n_inputs-1 are the network input (flat)
    var_lo: np.ndarray  # (n_vars,) known bounds (-inf/inf where none); the input box is exact
    var_hi: np.ndarray
    eq_A: sp.csr_matrix  # eq_A v = eq_b, exact
    eq_b: np.ndarray
    sign_vars: np.ndarray  # split constraints sign * v >= 0 (exact)
    signs: np.ndarray
    relus: Relu
    windows: list[MaxWindow]
    outputs: np.ndarray  # (n_out,) output variables
    C: np.ndarray  # spec rows (m, n_out), thresholds d (m,), owner (m,)
    d: np.ndarray
    owner: np.ndarray
    n_disjuncts: int

    @property
    def n_vars(self) -> int:
        return len(self.var_lo)

    @property
    def n_unstable(self) -> int:
        return len(self.relus.z) + sum(len(w.inputs) - 1 for w in self.windows)


@dataclass
class Form:
    """Affine form A v + c of a node's flat value."""

    A: sp.csr_matrix
    c: np.ndarray

    def rows(self, index: np.ndarray) -> "Form":
        return Form(self.A[index], self.c[index])

    def selection(self):
        """(var (n,), -1 for constant rows) when every row is one variable with coefficient 1
        or a constant, else None."""
        counts = np.diff(self.A.indptr)
        if (counts > 1).any():
            return None
        var = np.full(len(self.c), -1)
        has = counts == 1
        var[has] = self.A.indices[self.A.indptr[:-1][has]]
        if not np.all(self.A.data == 1.0) or np.any(self.c[has] != 0):
            return None
        return var


class _Builder:
    def __init__(self, lo: np.ndarray, hi: np.ndarray):
        self.lo, self.hi = [np.asarray(lo, float)], [np.asarray(hi, float)]
        self.n = len(lo)
        self.eq_rows, self.eq_cols, self.eq_vals, self.eq_b = [], [], [], []
        self.n_eq = 0
        self.sign_vars, self.signs = [], []
        self.relu_parts: list[tuple] = []
        self.windows: list[MaxWindow] = []

    def new_vars(self, k: int, lo=-np.inf, hi=np.inf) -> np.ndarray:
        self.lo.append(np.broadcast_to(np.asarray(lo, float), (k,)).copy())
        self.hi.append(np.broadcast_to(np.asarray(hi, float), (k,)).copy())
        self.n += k
        return np.arange(self.n - k, self.n)

    def materialise(self, form: Form, lo=None, hi=None) -> np.ndarray:
        """Selection vector (-1 for constants, then see form.c) for the form; rows that are not
        already a single variable or a constant get fresh variables and exact equalities."""
        var = form.selection()
        counts = np.diff(form.A.indptr)
        if var is not None and len(np.unique(var[var >= 0])) == int((var >= 0).sum()):
            return var
        need = counts > 0
        fresh = self.new_vars(int(need.sum()), -np.inf if lo is None else lo[need],
                              np.inf if hi is None else hi[need])
        A = form.A[need].tocoo()
        rows = A.row + self.n_eq
        k = len(fresh)
        # fresh - A v = c
        self.eq_rows += [rows, np.arange(self.n_eq, self.n_eq + k)]
        self.eq_cols += [A.col, fresh]
        self.eq_vals += [-A.data, np.ones(k)]
        self.eq_b.append(form.c[need])
        self.n_eq += k
        var = np.full(len(form.c), -1)
        var[need] = fresh
        return var

    def encoding(self, outputs, C, d, owner, n_disjuncts, n_inputs) -> Encoding:
        cat = lambda xs, dtype=float: np.concatenate(xs).astype(dtype) if xs else np.zeros(0, dtype)
        eq_A = sp.csr_matrix((cat(self.eq_vals), (cat(self.eq_rows, int), cat(self.eq_cols, int))),
                             shape=(self.n_eq, self.n))
        parts = list(zip(*self.relu_parts)) if self.relu_parts else [[]] * 4
        relus = Relu(*(cat(list(p), int if i < 2 else float) for i, p in enumerate(parts)))
        return Encoding(n_inputs, cat(self.lo), cat(self.hi), eq_A, cat(self.eq_b),
                        np.asarray(self.sign_vars, int), np.asarray(self.signs, int), relus,
                        self.windows, outputs, C, d, owner, n_disjuncts)


def widen(l: np.ndarray, u: np.ndarray):
    """Bounds widened against rounding, then rounded outward to float32 values (short
    rationals keep z3's arithmetic small)."""
    slack = _WIDEN_REL * (np.abs(l) + np.abs(u)) + _WIDEN_ABS
    return round_float32(l - slack, -1), round_float32(u + slack, 1)


def round_float32(a: np.ndarray, direction) -> np.ndarray:
    """a rounded to float32 values toward +inf (direction 1) or -inf (-1), as float64;
    direction may be an array of signs, one per element."""
    with np.errstate(over="ignore"):
        r = a.astype(np.float32)
    step = np.where(r.astype(np.float64) * direction < a * direction,
                    np.nextafter(r, np.float32(direction * np.inf)), r)
    return step.astype(np.float64)


def const_form(values: np.ndarray, n_vars: int) -> Form:
    return Form(sp.csr_matrix((len(values), n_vars)), np.asarray(values, float))


def select_form(var: np.ndarray, const: np.ndarray, n_vars: int) -> Form:
    has = var >= 0
    rows = np.nonzero(has)[0]
    A = sp.csr_matrix((np.ones(len(rows)), (rows, var[has])), shape=(len(var), n_vars))
    return Form(A, np.where(has, 0.0, const))


def encode(graph: Graph, bounds: dict, lo: np.ndarray, hi: np.ndarray, C: np.ndarray,
           d: np.ndarray, owner: np.ndarray, n_disjuncts: int, splits: dict | None = None) -> Encoding:
    """The network on the box [lo, hi] (flat), cut by BaB splits (relu node -> flat int8 in
    {-1, 0, +1}), with the spec C y <= d (rows grouped by owner into disjuncts).
    `bounds`: node name -> (l, u) flat float64 arrays valid on that domain (every ReLU and
    MaxPool input needs one)."""
    splits = splits or {}
    builder = _Builder(lo, hi)
    n_in = len(lo)
    forms = {graph.input_name: select_form(np.arange(n_in), np.zeros(n_in), n_in)}
    for node in graph.nodes:
        ins = [_padded(forms[i], builder.n) for i in node.inputs]
        forms[node.name] = _encode_node(builder, graph, node, ins, bounds, splits.get(node.name))
    out = _padded(forms[graph.output_name], builder.n)
    var = builder.materialise(out)
    const = var < 0
    if const.any():  # constant outputs become fixed variables
        var[const] = builder.new_vars(int(const.sum()), out.c[const], out.c[const])
    return builder.encoding(var, C, d, owner, n_disjuncts, n_in)


def _padded(form: Form, n_vars: int) -> Form:
    if form.A.shape[1] == n_vars:
        return form
    A = form.A.tocsr().copy()
    A.resize(A.shape[0], n_vars)
    return Form(A, form.c)


def _encode_node(builder: _Builder, graph: Graph, node, ins: list[Form], bounds, split) -> Form:
    if node.op in _LINEAR_OPS:
        return _linear(builder, graph, node, ins[0])
    if node.op in _SHAPE_OPS:
        return _shape(graph, node, ins)
    if node.op == "add":
        return _add(builder, node, ins)
    if node.op == "relu":
        return _relu(builder, ins[0], _bounds(bounds, node.inputs[0]), split)
    if node.op == "maxpool":
        return _maxpool(builder, node, ins[0], _bounds(bounds, node.inputs[0]))
    reason = "not piecewise linear" if RULES[node.op].nonlinear else "not supported by the SMT encoding"
    raise Decline(f"op {node.op} ({node.onnx_name or node.name}) is {reason}")


def _bounds(bounds: dict, name: str):
    l, u = bounds[name]
    return widen(np.asarray(l, float).reshape(-1), np.asarray(u, float).reshape(-1))


def _probe_matrix(node, in_shape, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """(J (n_out, n_in), b (n_out,)) with node(x) = J x + b, read exactly: each entry of J is
    one weight times 1 (checked against the weights), b = node(0)."""
    if n_in * node.size > _MAX_DENSE:
        raise Decline(f"op {node.op} ({node.onnx_name or node.name}) is too large to encode "
                      f"({n_in} x {node.size})")
    rule = RULES[node.op]
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
    zero = torch.zeros(1, *in_shape, dtype=torch.float64)
    with torch.no_grad():
        J = rule.linear_part(node, eye).reshape(n_in, -1).T.numpy()
        b = rule.forward(node, zero).reshape(-1).numpy()
    weights = np.concatenate([t.double().reshape(-1).numpy() for k, t in node.tensors.items()
                              if k in ("W", "scale")] or [np.ones(1)])
    if not np.isin(J[J != 0], weights).all():
        raise Decline(f"op {node.op} ({node.onnx_name or node.name}): its matrix is not read exactly")
    return J, b.astype(float)


def _linear(builder: _Builder, graph: Graph, node, form: Form) -> Form:
    var = _fix_constants(builder, builder.materialise(form), form.c)
    in_shape = graph.shape_of(node.inputs[0])
    J, b = _probe_matrix(node, in_shape, len(var))
    has = var >= 0
    Jv = sp.csr_matrix(J[:, has])
    cols = var[has]
    A = sp.csr_matrix((Jv.data, cols[Jv.indices], Jv.indptr), shape=(J.shape[0], builder.n))
    return Form(A, b)


def _fix_constants(builder: _Builder, var: np.ndarray, const: np.ndarray) -> np.ndarray:
    """Nonzero constant rows become fixed variables (v = c exactly), so that no constant is
    ever combined with a weight in floating point."""
    nz = (var < 0) & (const != 0)
    if nz.any():
        var = var.copy()
        var[nz] = builder.new_vars(int(nz.sum()), const[nz], const[nz])
    return var


def _shape(graph: Graph, node, ins: list[Form]) -> Form:
    """Rows move: probe the op with 1-based positions into the stacked inputs (0 = padding)."""
    sizes = [f.A.shape[0] for f in ins]
    offsets = np.cumsum([0] + sizes)
    probes = [torch.arange(offsets[i] + 1, offsets[i + 1] + 1, dtype=torch.float64)
              .reshape(1, *graph.shape_of(name)) for i, name in enumerate(node.inputs)]
    rule = RULES[node.op]
    with torch.no_grad():
        moved = (rule.linear_part(node, *probes) if node.op == "pad" else rule.forward(node, *probes))
    index = moved.reshape(-1).numpy().astype(np.int64) - 1
    A = sp.vstack([f.A for f in ins]).tocsr() if len(ins) > 1 else ins[0].A
    c = np.concatenate([f.c for f in ins])
    pad = index < 0
    out = Form(A[np.where(pad, 0, index)], np.where(pad, 0.0, c[np.where(pad, 0, index)]))
    if pad.any():
        out.A = out.A.multiply(~pad[:, None]).tocsr()
        out.c[pad] = node.attrs.get("value", 0.0)
    return out


def _add(builder: _Builder, node, ins: list[Form]) -> Form:
    a, b = (_fix_constants(builder, builder.materialise(f), f.c) for f in ins)
    fa, fb = (select_form(v, np.zeros(len(v)), builder.n) for v in (a, b))
    return Form((fa.A + float(node.attrs["sign"]) * fb.A).tocsr(), np.zeros(len(a)))


def _relu(builder: _Builder, form: Form, bounds, split) -> Form:
    l, u = bounds
    var = builder.materialise(form, l, u)
    const = form.c.copy()
    split = np.zeros(len(var), np.int8) if split is None else np.asarray(split).reshape(-1)
    is_var = var >= 0
    active = is_var & ((split > 0) | ((split == 0) & (l >= 0)))
    inactive = is_var & ((split < 0) | ((split == 0) & (u <= 0)))
    unstable = is_var & ~active & ~inactive
    for mask, sign in ((is_var & (split > 0), 1), (is_var & (split < 0), -1)):
        builder.sign_vars += list(var[mask])
        builder.signs += [sign] * int(mask.sum())
    out = np.where(active, var, -1)
    k = int(unstable.sum())
    y = builder.new_vars(k, 0.0, np.maximum(u[unstable], 0))
    out[unstable] = y
    builder.relu_parts.append((var[unstable], y, l[unstable], u[unstable]))
    return select_form(out, np.where(is_var, 0.0, np.maximum(const, 0)), builder.n)


def _maxpool(builder: _Builder, node, form: Form, bounds) -> Form:
    l, u = bounds
    var = builder.materialise(form, l, u)
    const = var < 0
    if const.any():  # constant inputs (after an inactive ReLU) become fixed variables
        var[const] = builder.new_vars(int(const.sum()), form.c[const], form.c[const])
        l, u = l.copy(), u.copy()
        l[const], u[const] = form.c[const], form.c[const]
    window = node.tensors["window"].cpu().numpy()
    out = np.full(len(window), -1)
    for i, row in enumerate(window):
        cand = row[row >= 0]
        keep = cand[u[cand] >= l[cand].max()]
        if len(keep) == 1:
            out[i] = var[keep[0]]
            continue
        m = builder.new_vars(1, l[keep].max(), u[keep].max())[0]
        builder.windows.append(MaxWindow(int(m), [int(v) for v in var[keep]], l[keep], u[keep]))
        out[i] = m
    return select_form(out, np.zeros(len(out)), builder.n)
