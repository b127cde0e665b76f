"""Random small ONNX models using the smooth ops and the products of variables (Exp, Log,
Reciprocal, Sqrt, Pow, Sin, Cos, Mul/Div/MatMul of two variables, ReduceSum, ReduceMean,
Softmax), in the style of onnx_factory. Inputs of Log, Sqrt, Reciprocal and fractional powers
are kept inside their domain on every box (squares plus a constant, exp, relu plus a constant).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from onnx_factory import OnnxBuilder, _batch_dim, _choice, _dense, save


def _positive(b: OnnxBuilder, h: str, rng) -> str:
    """A tensor > 0 on every input: h^2 + c, exp(h) + c or relu(h) + c, c > 0."""
    kind = _choice(rng, ["square", "exp", "relu"])
    c = b.const(np.float32(rng.uniform(0.2, 1.5)))
    if kind == "square":
        inner = b.add("Pow", [h, b.const(np.float32(2.0))]) if rng.random() < 0.5 else b.add("Mul", [h, h])
    elif kind == "exp":
        inner = b.add("Exp", [b.add("Mul", [h, b.const(np.float32(0.5))])])
    else:
        inner = b.add("Relu", [h])
    return b.add("Add", [inner, c])


def gen_exp_log(rng) -> onnx.ModelProto:
    n = int(rng.integers(2, 5))
    b = OnnxBuilder([_batch_dim(rng), n], rng=rng)
    h = _dense(b, b.input, n, n, rng)
    y = b.add("Exp", [b.add("Mul", [h, b.const(np.float32(0.5))])])
    z = b.add("Log", [_positive(b, _dense(b, b.input, n, n, rng), rng)])
    y = b.add(_choice(rng, ["Add", "Sub"]), [y, z])
    return b.model(_dense(b, y, n, 2, rng))


def gen_power(rng) -> onnx.ModelProto:
    n = int(rng.integers(2, 5))
    b = OnnxBuilder([_batch_dim(rng), n], rng=rng)
    h = _dense(b, b.input, n, n, rng)
    parts = []
    for _ in range(2):
        kind = _choice(rng, ["reciprocal", "sqrt", "int", "odd", "fraction", "negative", "divide"])
        if kind == "reciprocal":
            parts.append(b.add("Reciprocal", [_positive(b, h, rng)]))
        elif kind == "sqrt":
            parts.append(b.add("Sqrt", [_positive(b, h, rng)]))
        elif kind == "int":
            parts.append(b.add("Pow", [h, b.const(np.float32(_choice(rng, [2.0, 4.0])))]))
        elif kind == "odd":
            parts.append(b.add("Pow", [h, b.const(np.float32(3.0))]))
        elif kind == "fraction":
            parts.append(b.add("Pow", [_positive(b, h, rng), b.const(np.float32(_choice(rng, [0.5, 1.5, 2.5])))]))
        elif kind == "negative":
            parts.append(b.add("Pow", [_positive(b, h, rng), b.const(np.float32(_choice(rng, [-1.0, -2.0, -0.5])))]))
        else:
            top = b.const(rng.normal(size=n).astype(np.float32)) if rng.random() < 0.5 else h
            parts.append(b.add("Div", [top, _positive(b, _dense(b, b.input, n, n, rng), rng)]))
    return b.model(_dense(b, b.add("Add", parts), n, 2, rng))


def gen_trig(rng) -> onnx.ModelProto:
    n = int(rng.integers(2, 5))
    b = OnnxBuilder([_batch_dim(rng), n], rng=rng)
    h = b.add("Mul", [_dense(b, b.input, n, n, rng), b.const(np.float32(rng.choice([0.5, 2.0, 8.0])))])
    y = b.add(_choice(rng, ["Sin", "Cos"]), [h])
    if rng.random() < 0.5:
        y = b.add("Mul", [y, b.add(_choice(rng, ["Sin", "Cos"]), [_dense(b, b.input, n, n, rng)])])
    return b.model(_dense(b, y, n, 2, rng))


def gen_products(rng) -> onnx.ModelProto:
    """Mul and Div of two variables, broadcast shapes, and x * x."""
    n = int(rng.integers(2, 5))
    b = OnnxBuilder([1, n], rng=rng)
    x, y = _dense(b, b.input, n, n, rng), _dense(b, b.input, n, n, rng, "Relu")
    kind = _choice(rng, ["same", "broadcast", "square", "divide"])
    if kind == "same":
        z = b.add("Mul", [x, y])
    elif kind == "broadcast":  # (2, 1, n) * (1, 3, n) -> (2, 3, n)
        left = b.add("Reshape", [_dense(b, b.input, n, 2 * n, rng), b.ints([2, 1, n])])
        right = b.add("Reshape", [_dense(b, b.input, n, 3 * n, rng, "Tanh"), b.ints([1, 3, n])])
        z = b.add("Reshape", [b.add("Mul", [left, right]), b.ints([1, 6 * n])])
        return b.model(_dense(b, z, 6 * n, 2, rng))
    elif kind == "square":
        z = b.add("Mul", [x, x])
    else:
        z = b.add("Div", [x, _positive(b, y, rng)])
    return b.model(_dense(b, z, n, 2, rng))


def gen_matmul_variables(rng) -> onnx.ModelProto:
    """X @ Y of two variables: matrices, a vector on either side, a broadcast batch axis."""
    n, k, p = (int(v) for v in rng.integers(1, 4, size=3))
    b = OnnxBuilder([1, 4], rng=rng)
    kind = _choice(rng, ["matrices", "vector_left", "vector_right", "batched"])
    left_shape = {"matrices": [n, k], "vector_left": [k], "vector_right": [n, k], "batched": [2, n, k]}[kind]
    right_shape = {"matrices": [k, p], "vector_left": [k, p], "vector_right": [k], "batched": [1, k, p]}[kind]
    x = b.add("Reshape", [_dense(b, b.input, 4, int(np.prod(left_shape)), rng), b.ints(left_shape)])
    y = b.add("Reshape", [_dense(b, b.input, 4, int(np.prod(right_shape)), rng, "Relu"), b.ints(right_shape)])
    z = b.add("MatMul", [x, y])
    flat = b.add("Reshape", [z, b.ints([1, -1])])
    size = {"matrices": n * p, "vector_left": p, "vector_right": n, "batched": 2 * n * p}[kind]
    return b.model(_dense(b, flat, size, 2, rng))


def gen_reduce(rng) -> onnx.ModelProto:
    """ReduceSum / ReduceMean, axes as attribute (older opsets) or input, keepdims either way."""
    op = _choice(rng, ["ReduceSum", "ReduceMean"])
    opset = int(_choice(rng, [11, 13, 18]))
    b = OnnxBuilder([1, 2, 3, 4], opset=opset, rng=rng)
    h = b.add("Tanh", [b.input]) if rng.random() < 0.5 else b.input
    axes = sorted(int(a) for a in rng.choice([1, 2, 3, -1], size=int(rng.integers(1, 3)), replace=False))
    keepdims = int(rng.integers(2))
    axes_as_input = opset >= 18 or (op == "ReduceSum" and opset >= 13)
    if axes_as_input:
        y = b.add(op, [h, b.ints(axes)], keepdims=keepdims)
    else:
        y = b.add(op, [h], axes=axes, keepdims=keepdims)
    y = b.add("Reshape", [y, b.ints([1, -1])])
    y = b.add("Relu", [y]) if rng.random() < 0.5 else y
    return b.model(y)


def gen_softmax(rng) -> onnx.ModelProto:
    """Any axis; before opset 13 the axes from `axis` on are flattened into one."""
    opset = int(_choice(rng, [11, 13]))
    b = OnnxBuilder([1, 12], opset=opset, rng=rng)
    shape = _choice(rng, [[1, 12], [1, 3, 4], [1, 2, 3, 2]])
    h = b.add("Reshape", [_dense(b, b.input, 12, 12, rng), b.ints(shape)])
    y = b.add("Softmax", [h], axis=int(rng.integers(-len(shape), len(shape))))
    return b.model(b.add("Reshape", [y, b.ints([1, 12])]))


def gen_layernorm(rng) -> onnx.ModelProto:
    """(x - mean) / sqrt(var + eps) * gamma + beta over the last axis, as exporters write it."""
    n = int(rng.integers(3, 6))
    b = OnnxBuilder([1, 2, n], rng=rng)
    x = b.add("Add", [b.input, b.const(rng.normal(size=n).astype(np.float32))])
    mean = b.add("ReduceMean", [x], axes=[-1], keepdims=1)
    centred = b.add("Sub", [x, mean])
    var = b.add("ReduceMean", [b.add("Pow", [centred, b.const(np.float32(2.0))])], axes=[-1], keepdims=1)
    std = b.add("Sqrt", [b.add("Add", [var, b.const(np.float32(1e-5))])])
    y = b.add("Div", [centred, std])
    y = b.add("Add", [b.add("Mul", [y, b.const(rng.uniform(0.5, 1.5, n).astype(np.float32))]),
                      b.const(rng.normal(size=n).astype(np.float32))])
    return b.model(b.add("Reshape", [y, b.ints([1, 2 * n])]))


def gen_attention(rng) -> onnx.ModelProto:
    """One self-attention head: softmax(Q K^T / sqrt(d)) V on a few tokens."""
    tokens, d = int(rng.integers(2, 4)), int(rng.integers(2, 4))
    b = OnnxBuilder([1, tokens, d], rng=rng)
    x = b.input
    if rng.random() < 0.5:  # a constant class token in front, as vision transformers do
        x = b.add("Concat", [b.const(rng.normal(size=(1, 1, d)).astype(np.float32)), x], axis=1)
        tokens += 1
    q, k, v = (b.add("MatMul", [x, b.weight(d, d)]) for _ in range(3))
    scores = b.add("MatMul", [q, b.add("Transpose", [k], perm=[0, 2, 1])])
    scores = b.add("Mul", [scores, b.const(np.float32(1 / np.sqrt(d)))])
    attention = b.add("Softmax", [scores], axis=-1)
    y = b.add("MatMul", [attention, v])
    y = b.add("Reshape", [b.add("Add", [y, x]), b.ints([1, tokens * d])])
    return b.model(_dense(b, y, tokens * d, 2, rng))


FAMILIES = {
    "exp_log": gen_exp_log,
    "power": gen_power,
    "trig": gen_trig,
    "products": gen_products,
    "matmul_variables": gen_matmul_variables,
    "reduce": gen_reduce,
    "softmax": gen_softmax,
    "layernorm": gen_layernorm,
    "attention": gen_attention,
}


def make(family: str, seed: int, directory) -> str:
    """Save the random model of `family` for `seed` under directory; returns its path."""
    model = FAMILIES[family](np.random.default_rng(seed))
    onnx.checker.check_model(model)
    return save(model, Path(directory) / f"{family}_{seed}.onnx")
