"""Converters for the smooth ops and the products of variables: Exp, Log, Reciprocal, Sqrt,
Pow (constant exponent), Sin, Cos, Softmax, ReduceSum, ReduceMean, and Mul, Div and MatMul of
two variable tensors (onnx_ops hands those over here).
"""
from __future__ import annotations

import numpy as np

from verifier.graph.onnx_ops import _affine, _attrs, _axes, _inputs, _lift_rank, _reshape_to, converter


@converter("Exp", "Log", "Reciprocal", "Sqrt", "Sin", "Cos")
def _elementwise(b, node):
    b.emit(node.op_type.lower(), [node.input[0]], node.output[0])


@converter("Pow")
def _pow(b, node):
    x, p = _inputs(node)[:2]
    if not b.is_const(p):
        b.fail("Pow with a variable exponent is not supported (constant exponents only)")
    exponent = b.const(p)
    values = np.unique(exponent)
    if values.size != 1:
        b.fail("Pow with an exponent that differs across elements is not supported")
    if np.broadcast_shapes(b.shape(x), exponent.shape) != b.shape(x):
        b.fail(f"Pow with an exponent of shape {list(exponent.shape)} that broadcasts "
               f"{list(b.shape(x))} up is not supported")
    power = float(values[0])
    if power == 1:
        b.aliases[node.output[0]] = b.resolve(x)
    elif power == 0:  # x ** 0 is 1, 0 ** 0 included
        _affine(b, x, scale=np.float64(0.0), shift=np.float64(1.0), out=node.output[0])
    else:
        b.emit("pow", [x], node.output[0], attrs={"exponent": power})


def variable_product(b, x: str, y: str, out: str) -> str:
    """x * y for two variable tensors; x * x is a square (convex, far tighter than a product)."""
    if b.resolve(x) == b.resolve(y):
        return b.emit("pow", [x], out, attrs={"exponent": 2.0})
    rank = max(len(b.shape(x)), len(b.shape(y)))
    return b.emit("mul", [_lift_rank(b, x, rank), _lift_rank(b, y, rank)], out)


def variable_division(b, x: str, y: str, out: str) -> str:
    """x / y for a variable y: x * (1 / y), or a scale of 1 / y for a constant x."""
    inverse = b.emit("reciprocal", [y])
    if b.is_const(x):
        return _affine(b, inverse, scale=b.const(x).astype(np.float64), out=out)
    return variable_product(b, x, inverse, out)


def variable_matmul(b, x: str, y: str, out: str) -> str:
    """X @ Y with numpy's rules: 1-D operands get a unit axis, removed again after."""
    x_shape, y_shape = b.shape(x), b.shape(y)
    if len(x_shape) == 1:
        x = _reshape_to(b, x, (1, x_shape[0]))
    if len(y_shape) == 1:
        y = _reshape_to(b, y, (y_shape[0], 1))
    rank = max(len(b.shape(x)), len(b.shape(y)))
    x, y = _lift_rank(b, x, rank), _lift_rank(b, y, rank)
    if len(x_shape) > 1 and len(y_shape) > 1:
        return b.emit("matmul_variables", [x, y], out)
    product = b.emit("matmul_variables", [x, y])
    shape = b.shape(product)
    drop = [len(shape) - 2] if len(x_shape) == 1 else []
    drop += [len(shape) - 1] if len(y_shape) == 1 else []
    return _reshape_to(b, product, [n for i, n in enumerate(shape) if i not in drop], out)


@converter("Softmax")
def _softmax(b, node):
    """Over one axis (opset 13 on), or over the axes from `axis` on, flattened (before)."""
    x = node.input[0]
    shape = b.shape(x)
    rank = len(shape)
    axis = _attrs(node).get("axis", -1 if b.opset >= 13 else 1) % rank
    out = node.output[0]
    if b.opset < 13 and axis < rank - 1:
        flat = _reshape_to(b, x, (*shape[:axis], int(np.prod(shape[axis:]))))
        _reshape_to(b, b.emit("softmax", [flat], attrs={"axis": axis}), shape, out)
    elif axis < rank - 1:  # moved last and back
        perm = [i for i in range(rank) if i != axis] + [axis]
        moved = b.emit("softmax", [b.emit("transpose", [x], attrs={"perm": perm})], attrs={"axis": rank - 1})
        b.emit("transpose", [moved], out, attrs={"perm": [perm.index(i) for i in range(rank)]})
    else:
        b.emit("softmax", [x], out, attrs={"axis": axis})


@converter("ReduceSum", "ReduceMean")
def _reduce(b, node):
    a = _attrs(node)
    x = node.input[0]
    shape = b.shape(x)
    axes = _axes(b, node, 1)
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            b.aliases[node.output[0]] = b.resolve(x)
            return
        axes = range(len(shape))
    axes = tuple(sorted({int(i) % len(shape) for i in axes}))
    attrs = {"axes": axes, "keepdims": bool(a.get("keepdims", 1))}
    if node.op_type == "ReduceSum":
        b.emit("reducesum", [x], node.output[0], attrs=attrs)
        return
    count = int(np.prod([shape[i] for i in axes]))
    _affine(b, b.emit("reducesum", [x], attrs=attrs), scale=np.float64(1.0 / count), out=node.output[0])
