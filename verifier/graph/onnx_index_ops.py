"""Converters for index and step ops: Gather, Expand, Where, ScatterND, Cast, comparisons,
ArgMax/ArgMin, Sign, Floor, Ceil; Range and ConstantOfShape only name what they cannot do.

With constant indices an index op is a fixed linear map (`take`, `place`, or affine masks);
with integer-valued variable indices it is evaluated exactly (ops with no relaxation, or a
table: verifier/graph/discrete.py). Integer and bool tensors are held as floats in the IR.
"""
from __future__ import annotations

import numpy as np

from verifier.graph.discrete import COMPARISONS, source_dtype
from verifier.graph.onnx_ops import _affine, _attrs, _lift_rank, converter

_FLOAT_TYPES = {1, 11}  # FLOAT, DOUBLE


def _take(b, x: str, selection: np.ndarray, out) -> str:
    """A node picking x.flat[selection] into the shape of `selection`."""
    return b.emit("take", [x], out, tensors={"index": selection.reshape(-1, 1)},
                  attrs={"shape": tuple(int(s) for s in selection.shape)})


def _positions(shape) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)


def _wrapped(b, indices: np.ndarray, size: int, what: str) -> np.ndarray:
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < -size or indices.max() >= size):
        b.fail(f"{what} index out of range [{-size}, {size - 1}]")
    return np.where(indices < 0, indices + size, indices)


@converter("Gather")
def _gather(b, node):
    data, indices = node.input
    axis = _attrs(node).get("axis", 0)
    if b.is_const(indices):
        shape = b.shape(data)
        axis %= len(shape)
        index = _wrapped(b, b.const(indices), shape[axis], "Gather")
        _take(b, data, np.take(_positions(shape), index, axis=axis), node.output[0])
        return
    data_shape = b.const(data).shape if b.is_const(data) else b.shape(data)
    tensors = {"data": b.const(data).astype(np.float64)} if b.is_const(data) else {}
    inputs = [indices] if b.is_const(data) else [data, indices]
    b.emit("gather_indexed", inputs, node.output[0], tensors=tensors,
           attrs={"axis": axis % len(data_shape), "data_shape": tuple(data_shape), "onnx_op": "Gather"})


@converter("Expand")
def _expand(b, node):
    x, shape = node.input
    if not b.is_const(shape):
        b.fail("Expand to a variable shape is not supported")
    target = np.broadcast_shapes(b.shape(x), tuple(int(s) for s in b.const(shape)))
    if target == b.shape(x):
        b.aliases[node.output[0]] = b.resolve(x)
        return
    positions = _positions(b.shape(x))
    _take(b, x, np.broadcast_to(positions.reshape((1,) * (len(target) - positions.ndim) + positions.shape),
                                target), node.output[0])


@converter("Where")
def _where(b, node):
    condition, x, y = node.input
    if not b.is_const(condition):
        tensors = _constant_operands(b, x, y)
        variables = _lifted(b, [condition] + [n for n in (x, y) if not b.is_const(n)], tensors)
        b.emit("where", variables, node.output[0], tensors=tensors, attrs={"onnx_op": "Where"})
        return
    # a constant condition selects: x * c + y * (1 - c), constants folded into the shift
    c = b.const(condition).astype(bool)
    keep = c.astype(np.float64)
    if b.is_const(y):
        _affine(b, x, scale=keep, shift=np.where(c, 0.0, b.const(y)), out=node.output[0])
    elif b.is_const(x):
        _affine(b, y, scale=1.0 - keep, shift=np.where(c, b.const(x), 0.0), out=node.output[0])
    else:
        _add(b, _affine(b, x, scale=keep), _affine(b, y, scale=1.0 - keep), node.output[0])


def _constant_operands(b, x: str, y: str) -> dict:
    return {k: b.const(n).astype(np.float64) for k, n in (("x", x), ("y", y)) if b.is_const(n)}


def _lifted(b, variables: list[str], tensors: dict) -> list[str]:
    """The variables reshaped to one rank, at least the constants' (broadcasting stays aligned)."""
    rank = max([len(b.shape(v)) for v in variables] + [t.ndim for t in tensors.values()])
    return [_lift_rank(b, v, rank) for v in variables]


def _add(b, x: str, y: str, out) -> str:
    rank = max(len(b.shape(x)), len(b.shape(y)))
    return b.emit("add", [_lift_rank(b, x, rank), _lift_rank(b, y, rank)], out, attrs={"sign": 1})


@converter("ScatterND")
def _scatter_nd(b, node):
    data, indices, updates = node.input
    if _attrs(node).get("reduction", b"none") not in (b"none", "none"):
        b.fail("ScatterND with a reduction is not supported")
    if not b.is_const(indices):
        b.fail("ScatterND with variable indices into variable data is not supported")
    data_shape = b.const(data).shape if b.is_const(data) else b.shape(data)
    targets = _scatter_targets(b, b.const(indices), data_shape)
    written, last = np.unique(targets[::-1], return_index=True)  # a repeated index: the last write wins
    sources = len(targets) - 1 - last
    keep = np.ones(int(np.prod(data_shape)))
    keep[written] = 0.0
    keep = keep.reshape(data_shape)
    if b.is_const(updates):
        placed = np.zeros(keep.size)
        placed[written] = b.const(updates).astype(np.float64).reshape(-1)[sources]
        _affine(b, data, scale=keep, shift=placed.reshape(data_shape), out=node.output[0])
        return
    moved = updates
    if not np.array_equal(sources, np.arange(len(targets))):  # repeated or unsorted targets
        moved = b.emit("take", [updates], tensors={"index": sources.reshape(-1, 1)}, attrs={"shape": (len(sources),)})
    placed = b.emit("place", [moved], tensors={"position": written}, attrs={"shape": tuple(data_shape)})
    if b.is_const(data):
        _affine(b, placed, shift=b.const(data).astype(np.float64) * keep, out=node.output[0])
    else:
        _add(b, _affine(b, data, scale=keep), placed, node.output[0])


def _scatter_targets(b, indices: np.ndarray, data_shape) -> np.ndarray:
    """Flat positions of the data that each update element (in order) writes."""
    depth = indices.shape[-1]
    if depth > len(data_shape):
        b.fail(f"ScatterND indices of depth {depth} into a rank-{len(data_shape)} tensor")
    index = tuple(_wrapped(b, indices[..., k], data_shape[k], "ScatterND") for k in range(depth))
    return _positions(data_shape)[index].reshape(-1)


@converter("Cast")
def _cast(b, node):
    x = node.input[0]
    to = _attrs(node)["to"]
    dtype = source_dtype(node)
    if to in _FLOAT_TYPES:
        b.aliases[node.output[0]] = b.resolve(x)  # float to float: values unchanged
    elif dtype is None:
        b.fail(f"Cast to type {to} is not supported")
    else:
        b.emit("nonzero" if dtype == np.bool_ else "trunc", [x], node.output[0], attrs={"onnx_op": "Cast"})
        b.regions.mark(node.output[0], dtype)


@converter(*COMPARISONS)
def _compare(b, node):
    x, y = node.input
    tensors = _constant_operands(b, x, y)
    variables = _lifted(b, [n for n in (x, y) if not b.is_const(n)], tensors)
    b.emit("compare", variables, node.output[0], tensors=tensors,
           attrs={"relation": COMPARISONS[node.op_type], "onnx_op": node.op_type})
    b.regions.mark(node.output[0], np.bool_)


@converter("ArgMax", "ArgMin")
def _argmax(b, node):
    a = _attrs(node)
    x = node.input[0]
    if node.op_type == "ArgMin":
        x = _affine(b, x, scale=np.float64(-1.0))
    b.emit("argmax", [x], node.output[0],
           attrs={"axis": a.get("axis", 0) % len(b.shape(x)), "keepdims": bool(a.get("keepdims", 1)),
                  "last": bool(a.get("select_last_index", 0)), "onnx_op": node.op_type})
    b.regions.mark(node.output[0], np.int64)


@converter("Sign", "Floor")
def _step(b, node):
    b.emit(node.op_type.lower(), [node.input[0]], node.output[0])


@converter("Ceil")
def _ceil(b, node):
    """ceil(x) = -floor(-x)."""
    floored = b.emit("floor", [_affine(b, node.input[0], scale=np.float64(-1.0))])
    _affine(b, floored, scale=np.float64(-1.0), out=node.output[0])


@converter("Range", "ConstantOfShape")
def _shape_from_values(b, node):
    b.fail(f"{node.op_type} of a variable gives a shape that depends on the input; not supported")
