"""Shape inference for the verifier ops, in plain Python and numpy (the loader runs without
torch, so that loading a model and parsing its spec take a fraction of a second).

Each function takes the node (its constant tensors and attributes) and the per-sample shapes of
its inputs, and returns the per-sample output shape; a ValueError names a mismatch.
"""
from __future__ import annotations

import math

import numpy as np


def output_shape(node, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    return SHAPES[node.op](node, *in_shapes)


def window_count(padded_size: int, kernel: int, stride: int, dilation: int, ceil: bool = False) -> int:
    """How many positions a sliding window (convolution, pooling) takes along one axis; below 1
    when the window does not fit."""
    span = padded_size - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    return (-(-span // stride) if ceil else span // stride) + 1


def _broadcast(*shapes) -> tuple[int, ...]:
    """Broadcast per-sample shapes as the batched tensors (1, *shape) broadcast; constants
    carry no batch dimension."""
    return tuple(np.broadcast_shapes(*shapes))


def _with_batch(shape):
    return (1, *shape)


def _matmul(node, x):
    W = node.tensors["W"]
    if x[-1] != W.shape[0]:
        raise ValueError(f"a last axis of {x[-1]} cannot multiply a {W.shape[0]}x{W.shape[1]} matrix")
    out = _with_batch((*x[:-1], W.shape[1]))
    if "b" in node.tensors:
        out = _broadcast(out, node.tensors["b"].shape)
    return out[1:]


def _conv(node, x):
    a, W = node.attrs, node.tensors["W"]
    nd = a["spatial_dims"]
    if len(x) < nd + 1:
        raise ValueError(f"a rank-{len(x)} input cannot feed a {nd}-D convolution")
    channels, spatial = x[-nd - 1], x[-nd:]
    if channels != W.shape[1] * a["groups"]:
        raise ValueError(f"the input has {channels} channels, the weights expect {W.shape[1] * a['groups']}")
    out = [window_count(spatial[i] + 2 * a["padding"][i], W.shape[2 + i], a["stride"][i], a["dilation"][i])
           for i in range(nd)]
    if min(out) < 1:
        raise ValueError(f"the kernel is larger than the padded input {list(spatial)}")
    if "b" in node.tensors and node.tensors["b"].size != W.shape[0]:
        raise ValueError(f"the bias has {node.tensors['b'].size} entries for {W.shape[0]} channels")
    return (*x[:-nd - 1], W.shape[0], *out)


def _affine(node, x):
    return _broadcast(_with_batch(x), *(t.shape for t in node.tensors.values()))[1:]


def _add(node, x, y):
    return _broadcast(_with_batch(x), _with_batch(y))[1:]


def _same(node, x):
    return x


def _maxpool(node, x):
    a = node.attrs
    left, right, top, bottom = a["torch_pads"]
    padded = (x[-2] + top + bottom, x[-1] + left + right)
    out = [window_count(padded[i], a["kernel"][i], a["stride"][i], a["dilation"][i]) for i in range(2)]
    if min(out) < 1:
        raise ValueError(f"a {a['kernel'][0]}x{a['kernel'][1]} window does not fit a {x[-2]}x{x[-1]} input")
    return (*x[:-2], *out)


def _reshape(node, x):
    target = tuple(node.attrs["target"])
    if math.prod(target) != math.prod(x):
        raise ValueError(f"cannot reshape {list(x)} to {list(target)}")
    return target


def _transpose(node, x):
    perm = node.attrs["perm"]
    if sorted(perm) != list(range(len(x))):
        raise ValueError(f"perm {list(perm)} does not match a rank-{len(x)} input")
    return tuple(x[p] for p in perm)


def _concat(node, *xs):
    axis = node.attrs["axis"]
    first = xs[0]
    for x in xs[1:]:
        if len(x) != len(first) or any(a != b for i, (a, b) in enumerate(zip(x, first)) if i != axis):
            raise ValueError(f"cannot concatenate {list(first)} and {list(x)} on axis {axis}")
    return (*first[:axis], sum(x[axis] for x in xs), *first[axis + 1:])


def _slice(node, x):
    index = node.attrs["index"]
    if len(index) > len(x):
        raise ValueError(f"{len(index)} slices for a rank-{len(x)} input")
    sliced = tuple(len(range(*s.indices(n))) for s, n in zip(index, x))
    return (*sliced, *x[len(index):])


def _pad(node, x):
    pads = node.attrs["pads"]
    if len(pads) != len(x):
        raise ValueError(f"{len(pads)} pad pairs for a rank-{len(x)} input")
    return tuple(n + begin + end for n, (begin, end) in zip(x, pads))


def _conv_transpose(node, x):
    a, W = node.attrs, node.tensors["W"]
    nd = a["spatial_dims"]
    if len(x) < nd + 1:
        raise ValueError(f"a rank-{len(x)} input cannot feed a {nd}-D transposed convolution")
    if x[-nd - 1] != W.shape[0]:
        raise ValueError(f"the input has {x[-nd - 1]} channels, the weights expect {W.shape[0]}")
    out = [a["stride"][i] * (x[-nd + i] - 1) + a["dilation"][i] * (W.shape[2 + i] - 1) + 1 + a["extra"][i]
           - sum(a["crop"][i]) for i in range(nd)]
    if min(out) < 1:
        raise ValueError(f"the pads leave no output of a {list(x)} input")
    return (*x[:-nd - 1], W.shape[1] * a["groups"], *out)


def _declared(node, *xs):
    """Ops whose loader computed the output shape (index maps, tables)."""
    return tuple(node.attrs["shape"])


def _take(node, x):
    if node.tensors["index"].size and node.tensors["index"].max() >= math.prod(x):
        raise ValueError(f"an index reaches past the {math.prod(x)} elements of {list(x)}")
    return _declared(node)


def _place(node, x):
    if node.tensors["position"].size != math.prod(x):
        raise ValueError(f"{node.tensors['position'].size} positions for {math.prod(x)} values")
    return _declared(node)


def _argmax(node, x):
    axis = node.attrs["axis"]
    return (*x[:axis], 1, *x[axis + 1:]) if node.attrs["keepdims"] else (*x[:axis], *x[axis + 1:])


def _broadcast_all(node, *xs):
    """Variables and constant operands broadcast together (comparisons, Where, products)."""
    return _broadcast(*(_with_batch(x) for x in xs), *(t.shape for t in node.tensors.values()))[1:]


def _gather_indexed(node, *xs):
    data = node.attrs["data_shape"]
    axis = node.attrs["axis"]
    return (*data[:axis], *xs[-1], *data[axis + 1:])
def _matmul_variables(node, x, y):
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"cannot multiply {list(x)} by {list(y)} (equal ranks of at least 2 expected)")
    if x[-1] != y[-2]:
        raise ValueError(f"cannot multiply {list(x)} by {list(y)}: {x[-1]} != {y[-2]}")
    return (*_broadcast(_with_batch(x[:-2]), _with_batch(y[:-2]))[1:], x[-2], y[-1])


def _reduce(node, x):
    axes = node.attrs["axes"]
    if any(a < 0 or a >= len(x) for a in axes):
        raise ValueError(f"axes {list(axes)} do not fit a rank-{len(x)} input")
    if node.attrs["keepdims"]:
        return tuple(1 if i in axes else n for i, n in enumerate(x))
    return tuple(n for i, n in enumerate(x) if i not in axes)


def _softmax(node, x):
    if not 0 <= node.attrs["axis"] < len(x):
        raise ValueError(f"axis {node.attrs['axis']} does not fit a rank-{len(x)} input")
    return x


SHAPES = {
    "matmul": _matmul,
    "conv": _conv,
    "affine": _affine,
    "add": _add,
    "relu": _same,
    "sigmoid": _same,
    "tanh": _same,
    "maxpool": _maxpool,
    "reshape": _reshape,
    "transpose": _transpose,
    "concat": _concat,
    "slice": _slice,
    "pad": _pad,
    "conv_transpose": _conv_transpose,
    "take": _take,
    "place": _place,
    "sign": _same,
    "floor": _same,
    "trunc": _same,
    "nonzero": _same,
    "argmax": _argmax,
    "compare": _broadcast_all,
    "where": _broadcast_all,
    "gather_indexed": _gather_indexed,
    "table": _declared,
    "exp": _same,
    "log": _same,
    "reciprocal": _same,
    "sqrt": _same,
    "pow": _same,
    "sin": _same,
    "cos": _same,
    "mul": _add,
    "matmul_variables": _matmul_variables,
    "reducesum": _reduce,
    "softmax": _softmax,
}
