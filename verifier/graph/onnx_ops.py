"""One converter per ONNX op type: it maps the node onto verifier ops through Builder.emit.

Shapes here are per-sample (the ONNX shape, batch dimension included as 1); the IR adds its
own batch dimension in front when it evaluates.
"""
from __future__ import annotations

import numpy as np
import onnx

from verifier.graph.shapes import window_count

CONVERTERS = {}


def converter(*op_types):
    def register(fn):
        for op in op_types:
            CONVERTERS[op] = fn
        return fn
    return register


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _inputs(node) -> list[str]:
    return list(node.input)


def _optional(b, node, index, default=None):
    names = _inputs(node)
    if index < len(names) and names[index]:
        return b.const(names[index]) if b.is_const(names[index]) else b.fail(
            f"input {index} must be a constant")
    return default


def _lift_rank(b, name: str, rank: int) -> str:
    """Reshape a variable to `rank` dims (leading 1s) so ONNX broadcasting stays trailing-aligned."""
    shape = b.shape(name)
    return name if len(shape) >= rank else _reshape_to(b, name, (1,) * (rank - len(shape)) + shape)


def _reshape_to(b, name: str, shape, out=None) -> str:
    return b.emit("reshape", [name], out, attrs={"target": tuple(int(s) for s in shape)})


# --- aliases ------------------------------------------------------------------------------

@converter("Identity", "Dropout")
def _identity(b, node):
    b.aliases[node.output[0]] = b.resolve(node.input[0])


# --- elementwise arithmetic ----------------------------------------------------------------

def _affine(b, var: str, scale=None, shift=None, out=None, rounding=None) -> str:
    """var * scale + shift, constants broadcast against var. `rounding`: the magnitude of the
    intermediate constants of the ONNX form, which float32 rounding error scales with."""
    tensors = {}
    if scale is not None:
        tensors["scale"] = np.asarray(scale, dtype=np.float64)
    if shift is not None:
        tensors["shift"] = np.asarray(shift, dtype=np.float64)
    if rounding is not None:
        tensors["rounding"] = np.asarray(rounding, dtype=np.float64)
    rank = max(np.ndim(t) for t in tensors.values())
    var = _lift_rank(b, var, rank)
    return b.emit("affine", [var], out, tensors=tensors)


@converter("Add", "Sub", "Mul", "Div")
def _arithmetic(b, node):
    x, y = _inputs(node)
    op = node.op_type
    if not b.is_const(x) and not b.is_const(y):
        if op == "Mul":
            return variable_product(b, x, y, node.output[0])
        if op == "Div":
            return variable_division(b, x, y, node.output[0])
        rank = max(len(b.shape(x)), len(b.shape(y)))
        x, y = _lift_rank(b, x, rank), _lift_rank(b, y, rank)
        b.emit("add", [x, y], node.output[0], attrs={"sign": 1 if op == "Add" else -1})
        return
    if b.is_const(x):  # constant on the left
        c, var = b.const(x).astype(np.float64), y
        if op == "Add":
            return _affine(b, var, shift=c, out=node.output[0])
        if op == "Sub":
            return _affine(b, var, scale=-np.ones_like(c), shift=c, out=node.output[0])
        if op == "Mul":
            return _affine(b, var, scale=c, out=node.output[0])
        return variable_division(b, x, var, node.output[0])
    c, var = b.const(y).astype(np.float64), x
    if op == "Add":
        return _affine(b, var, shift=c, out=node.output[0])
    if op == "Sub":
        return _affine(b, var, shift=-c, out=node.output[0])
    if op == "Mul":
        return _affine(b, var, scale=c, out=node.output[0])
    return _affine(b, var, scale=1.0 / c, out=node.output[0])


@converter("Neg")
def _neg(b, node):
    _affine(b, node.input[0], scale=np.float64(-1.0), out=node.output[0])


@converter("BatchNormalization")
def _batchnorm(b, node):
    a = _attrs(node)
    x = node.input[0]
    gamma, beta, mean, var = (b.const(n).astype(np.float64) for n in node.input[1:5])
    scale = gamma / np.sqrt(var + a.get("epsilon", 1e-5))
    channel_shape = (-1,) + (1,) * (len(b.shape(x)) - 2)
    _affine(b, x, scale=scale.reshape(channel_shape), shift=(beta - mean * scale).reshape(channel_shape),
            out=node.output[0], rounding=(np.abs(beta) + np.abs(mean * scale)).reshape(channel_shape))


# --- linear layers ---------------------------------------------------------------------------

@converter("MatMul")
def _matmul(b, node):
    x, w = _inputs(node)
    if b.is_const(w) and not b.is_const(x):
        W = b.const(w)
        if W.ndim == 1:  # a vector: the product drops the last axis
            y = b.emit("matmul", [x], tensors={"W": W.reshape(-1, 1)})
            _reshape_to(b, y, b.shape(x)[:-1], node.output[0])
            return
        if W.ndim != 2:
            b.fail(f"MatMul by a constant of rank {W.ndim} is not supported (rank 1 or 2 only)")
        b.emit("matmul", [x], node.output[0], tensors={"W": W})
        return
    if b.is_const(x) and not b.is_const(w):  # C @ v  ==  (v^T @ C^T)^T on the last two axes
        C = b.const(x)
        rank = len(b.shape(w))
        if C.ndim != 2:
            b.fail(f"MatMul of a rank-{C.ndim} constant by a variable is not supported (rank 2 only)")
        if rank == 1:  # matrix-vector product
            b.emit("matmul", [w], node.output[0], tensors={"W": C.T})
            return
        swap = list(range(rank - 2)) + [rank - 1, rank - 2]
        t = b.emit("transpose", [w], attrs={"perm": swap})
        t = b.emit("matmul", [t], tensors={"W": C.T})
        b.emit("transpose", [t], node.output[0], attrs={"perm": swap})
        return
    variable_matmul(b, x, w, node.output[0])


@converter("Gemm")
def _gemm(b, node):
    a = _attrs(node)
    x, w = _inputs(node)[:2]
    if not b.is_const(w) or b.is_const(x):
        b.fail("Gemm needs a variable A and a constant B")
    if a.get("transA", 0):
        x = b.emit("transpose", [x], attrs={"perm": [1, 0]})
    W = b.const(w).astype(np.float64)
    W = (W.T if a.get("transB", 0) else W) * a.get("alpha", 1.0)
    tensors = {"W": W}
    c = _optional(b, node, 2)
    if c is not None:
        tensors["b"] = c.astype(np.float64) * a.get("beta", 1.0)
    b.emit("matmul", [x], node.output[0], tensors=tensors)


def _conv_padding(b, node, a, in_spatial, kernel, stride, dilation):
    """Symmetric torch padding, plus explicit (begin, end) pads when ONNX's are asymmetric."""
    nd = len(kernel)
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for i in range(nd):
            out = -(-in_spatial[i] // stride[i])
            total = max(0, (out - 1) * stride[i] + (kernel[i] - 1) * dilation[i] + 1 - in_spatial[i])
            small, big = total // 2, total - total // 2
            pads.append((small, big) if auto_pad == "SAME_UPPER" else (big, small))
    elif auto_pad == "VALID":
        pads = [(0, 0)] * nd
    else:
        flat = list(a.get("pads", [0] * (2 * nd)))
        pads = [(flat[i], flat[i + nd]) for i in range(nd)]
    return pads


def conv_weights(b, node) -> tuple[np.ndarray, int]:
    """The constant weights of a Conv or ConvTranspose and its number of spatial axes (1 or 2)."""
    if not b.is_const(node.input[1]):
        b.fail(f"{node.op_type} weights must be constant")
    W = b.const(node.input[1]).astype(np.float64)
    nd = W.ndim - 2
    if nd not in (1, 2):
        b.fail(f"{node.op_type}{nd}d is not supported (1-D and 2-D only)")
    return W, nd


@converter("Conv")
def _conv(b, node):
    a = _attrs(node)
    x = node.input[0]
    W, nd = conv_weights(b, node)
    kernel = tuple(W.shape[2:])
    stride = tuple(a.get("strides", [1] * nd))
    dilation = tuple(a.get("dilations", [1] * nd))
    in_shape = b.shape(x)
    pads = _conv_padding(b, node, a, in_shape[-nd:], kernel, stride, dilation)
    if any(p0 != p1 for p0, p1 in pads):
        x = _pad(b, x, [(0, 0)] * (len(in_shape) - nd) + pads, 0.0)
        pads = [(0, 0)] * nd
    tensors = {"W": W}
    bias = _optional(b, node, 2)
    if bias is not None:
        tensors["b"] = bias.astype(np.float64)
    b.emit("conv", [x], node.output[0], tensors=tensors,
           attrs={"spatial_dims": nd, "stride": stride, "padding": tuple(p for p, _ in pads),
                  "dilation": dilation, "groups": a.get("group", 1)})


def _pad(b, x, pads, value, out=None):
    return b.emit("pad", [x], out, attrs={"pads": [tuple(int(v) for v in p) for p in pads],
                                         "value": float(value)})


@converter("Pad")
def _pad_node(b, node):
    a = _attrs(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        b.fail(f"Pad mode '{mode}' is not supported (constant only)")
    x = node.input[0]
    rank = len(b.shape(x))
    flat = a["pads"] if "pads" in a else list(_optional(b, node, 1))
    value = a.get("value", 0.0)
    v = _optional(b, node, 2)
    if v is not None and np.size(v):
        value = float(np.asarray(v).reshape(-1)[0])
    axes = _optional(b, node, 3)
    axes = list(range(rank)) if axes is None else [int(i) % rank for i in axes]
    pads = [(0, 0)] * rank
    for k, axis in enumerate(axes):
        pads[axis] = (int(flat[k]), int(flat[k + len(axes)]))
    if any(p < 0 for pair in pads for p in pair):
        b.fail("negative pads are not supported")
    _pad(b, x, pads, value, node.output[0])


# --- pooling --------------------------------------------------------------------------------

def _pool_geometry(b, node):
    a = _attrs(node)
    x = node.input[0]
    shape = b.shape(x)
    if len(shape) != 4:
        b.fail(f"{node.op_type} on a rank-{len(shape)} tensor is not supported (2-D pooling only)")
    kernel = tuple(a["kernel_shape"])
    stride = tuple(a.get("strides", [1, 1]))
    dilation = tuple(a.get("dilations", [1, 1]))
    pads = _conv_padding(b, node, a, shape[-2:], kernel, stride, dilation)
    return a, x, shape, kernel, stride, dilation, pads


@converter("MaxPool")
def _maxpool(b, node):
    a, x, shape, kernel, stride, dilation, pads = _pool_geometry(b, node)
    if len(node.output) > 1 and node.output[1]:
        b.fail("MaxPool with an Indices output is not supported")
    torch_pads = (pads[1][0], pads[1][1], pads[0][0], pads[0][1])
    ceil_mode = bool(a.get("ceil_mode", 0))
    if ceil_mode and _pooled_size(shape, kernel, stride, dilation, pads, True) != \
            _pooled_size(shape, kernel, stride, dilation, pads, False):
        b.fail("MaxPool with ceil_mode and partial windows is not supported")
    window = _window_table(shape, kernel, stride, dilation, torch_pads)
    b.emit("maxpool", [x], node.output[0], tensors={"window": window},
           attrs={"kernel": kernel, "stride": stride, "dilation": dilation,
                  "torch_pads": torch_pads, "ceil_mode": ceil_mode})


def _pooled_size(shape, kernel, stride, dilation, pads, ceil):
    return [window_count(shape[-2 + i] + sum(pads[i]), kernel[i], stride[i], dilation[i], ceil) for i in range(2)]


def _window_table(shape, kernel, stride, dilation, torch_pads):
    """(n_out, k) flat input indices of every pooling window, -1 where it covers padding; rows
    run over channels, then output positions; columns over the kernel, row-major."""
    positions = np.arange(int(np.prod(shape[-3:]))).reshape(shape[-3:])
    padded = np.pad(positions, [(0, 0), torch_pads[2:], torch_pads[:2]], constant_values=-1)
    windows = _window_values(padded, kernel, stride, dilation)
    return windows.reshape(-1, kernel[0] * kernel[1])


def _window_values(padded: np.ndarray, kernel, stride, dilation) -> np.ndarray:
    """(..., H_out, W_out, k) entries of every window of the last two axes of `padded`."""
    out = [window_count(padded.shape[-2 + i], kernel[i], stride[i], dilation[i]) for i in range(2)]
    taps = [padded[..., i * dilation[0]: i * dilation[0] + stride[0] * (out[0] - 1) + 1: stride[0],
                   j * dilation[1]: j * dilation[1] + stride[1] * (out[1] - 1) + 1: stride[1]]
            for i in range(kernel[0]) for j in range(kernel[1])]
    return np.stack(taps, axis=-1)


@converter("AveragePool", "GlobalAveragePool")
def _avgpool(b, node):
    """Sum by a depthwise convolution with ones, then divide by each window's count."""
    if node.op_type == "GlobalAveragePool":
        x = node.input[0]
        shape = b.shape(x)
        if len(shape) != 4:
            b.fail(f"{node.op_type} on a rank-{len(shape)} tensor is not supported (2-D pooling only)")
        kernel, stride, dilation, pads, include_pad = tuple(shape[-2:]), (1, 1), (1, 1), [(0, 0)] * 2, 1
    else:
        a, x, shape, kernel, stride, dilation, pads = _pool_geometry(b, node)
        include_pad = a.get("count_include_pad", 0)
        if a.get("ceil_mode", 0):
            b.fail("AveragePool with ceil_mode is not supported")
    channels = shape[-3]
    ones = np.ones((channels, 1, *kernel))
    if any(p != (0, 0) for p in pads):
        x = _pad(b, x, [(0, 0)] * (len(shape) - 2) + list(pads), 0.0)
    summed = b.emit("conv", [x], tensors={"W": ones},
                    attrs={"spatial_dims": 2, "stride": stride, "padding": (0, 0),
                           "dilation": dilation, "groups": channels})
    mask = np.pad(np.ones(shape[-2:]), list(pads), constant_values=1.0 if include_pad else 0.0)
    count = _window_values(mask, kernel, stride, dilation).sum(-1)
    _affine(b, summed, scale=1.0 / count[None], out=node.output[0])


# --- activations ----------------------------------------------------------------------------

@converter("Relu", "Sigmoid", "Tanh")
def _activation(b, node):
    b.emit(node.op_type.lower(), [node.input[0]], node.output[0])


# Piecewise-linear activations are rewritten exactly into ReLUs and affine ops, so that bound
# propagation, slope optimisation and ReLU branching apply to them unchanged.

def _add_vars(b, x: str, y: str, sign: int = 1, out=None) -> str:
    rank = max(len(b.shape(x)), len(b.shape(y)))
    return b.emit("add", [_lift_rank(b, x, rank), _lift_rank(b, y, rank)], out, attrs={"sign": sign})


def _relu(b, x: str) -> str:
    return b.emit("relu", [x])


def _leaky(b, x: str, slope, out) -> str:
    """slope * x + (1 - slope) * relu(x): x where x >= 0, slope * x below."""
    slope = np.asarray(slope, dtype=np.float64)
    return _add_vars(b, _affine(b, x, scale=slope), _affine(b, _relu(b, x), scale=1.0 - slope), out=out)


@converter("LeakyRelu")
def _leaky_relu(b, node):
    _leaky(b, node.input[0], _attrs(node).get("alpha", 0.01), node.output[0])


@converter("PRelu")
def _prelu(b, node):
    if not b.is_const(node.input[1]):
        b.fail("PRelu with a variable slope is not supported")
    _leaky(b, node.input[0], b.const(node.input[1]), node.output[0])


@converter("Abs")
def _abs(b, node):
    x = node.input[0]
    _add_vars(b, _affine(b, _relu(b, x), scale=np.float64(2.0)), x, sign=-1, out=node.output[0])


def _clip(b, x: str, low, high, out) -> str:
    """min(max(x, low), high) = low + relu(x - low) - relu(x - high), either bound optional."""
    if low is None and high is None:
        b.aliases[out] = b.resolve(x)
        return out
    if low is not None and high is not None and low > high:
        b.fail("Clip with min above max is not supported")
    if high is None:
        return _affine(b, _relu(b, _affine(b, x, shift=-low)), shift=low, out=out)
    above = _relu(b, _affine(b, x, shift=-high))
    if low is None:
        return _add_vars(b, x, above, sign=-1, out=out)
    inside = _add_vars(b, _relu(b, _affine(b, x, shift=-low)), above, sign=-1)
    return _affine(b, inside, shift=low, out=out)


def _scalar(b, node, index: int, attr: str):
    """A scalar operand given as input `index` (newer opsets) or attribute `attr` (older)."""
    value = _optional(b, node, index)
    if value is None:
        value = _attrs(node).get(attr)
    return None if value is None else np.float64(np.asarray(value).reshape(-1)[0])


@converter("Clip")
def _clip_node(b, node):
    _clip(b, node.input[0], _scalar(b, node, 1, "min"), _scalar(b, node, 2, "max"), node.output[0])


@converter("HardSigmoid")
def _hard_sigmoid(b, node):
    a = _attrs(node)
    scaled = _affine(b, node.input[0], scale=np.float64(a.get("alpha", 0.2)), shift=np.float64(a.get("beta", 0.5)))
    _clip(b, scaled, np.float64(0.0), np.float64(1.0), node.output[0])


@converter("Max", "Min")
def _max_min(b, node):
    """Operands folded pairwise, the last pair writing the node's output."""
    names = [n for n in node.input if n]
    result = names[0]
    for k, other in enumerate(names[1:]):
        out = node.output[0] if k == len(names) - 2 else None
        result = _max_min_pair(b, result, other, node.op_type == "Max", out)
    if len(names) == 1:
        b.aliases[node.output[0]] = b.resolve(result)


def _max_min_pair(b, x: str, y: str, is_max: bool, out) -> str:
    """max(x, y) = y + relu(x - y); min(x, y) = x - relu(x - y)."""
    if b.is_const(x):
        x, y = y, x
    if b.is_const(y):
        c = b.const(y).astype(np.float64)
        excess = _relu(b, _affine(b, x, shift=-c))
        return _affine(b, excess, shift=c, out=out) if is_max else _add_vars(b, x, excess, sign=-1, out=out)
    excess = _relu(b, _add_vars(b, x, y, sign=-1))
    return _add_vars(b, y, excess, out=out) if is_max else _add_vars(b, x, excess, sign=-1, out=out)


# --- shape ops ------------------------------------------------------------------------------

@converter("Flatten")
def _flatten(b, node):
    shape = b.shape(node.input[0])
    axis = _attrs(node).get("axis", 1)
    axis = axis + len(shape) if axis < 0 else axis  # axis == rank is allowed: (prod, 1)
    _reshape_to(b, node.input[0], (int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))),
                node.output[0])


@converter("Reshape")
def _reshape(b, node):
    shape = b.shape(node.input[0])
    target = [int(v) for v in b.const(node.input[1])]
    if not _attrs(node).get("allowzero", 0) and any(v == 0 and i >= len(shape) for i, v in enumerate(target)):
        b.fail(f"shape mismatch: Reshape target {target} copies a dimension that {list(shape)} lacks")
    target = [shape[i] if v == 0 and not _attrs(node).get("allowzero", 0) else v
              for i, v in enumerate(target)]
    if target.count(-1) > 1:
        b.fail("Reshape target has more than one -1")
    if -1 in target:
        known = int(np.prod([v for v in target if v != -1]))
        target[target.index(-1)] = int(np.prod(shape)) // max(known, 1)
    if int(np.prod(target)) != int(np.prod(shape)):
        b.fail(f"shape mismatch: cannot reshape {list(shape)} to {target}")
    _reshape_to(b, node.input[0], target, node.output[0])


def _axes(b, node, index):
    a = _attrs(node)
    if "axes" in a:
        return list(a["axes"])
    value = _optional(b, node, index)
    return None if value is None else [int(v) for v in value]


@converter("Squeeze")
def _squeeze(b, node):
    shape = list(b.shape(node.input[0]))
    axes = _axes(b, node, 1)
    axes = [i for i, s in enumerate(shape) if s == 1] if axes is None else [a % len(shape) for a in axes]
    target = [s for i, s in enumerate(shape) if i not in axes]
    _reshape_to(b, node.input[0], target, node.output[0])


@converter("Unsqueeze")
def _unsqueeze(b, node):
    target = list(b.shape(node.input[0]))
    axes = _axes(b, node, 1)
    rank = len(target) + len(axes)
    for axis in sorted(a % rank for a in axes):
        target.insert(axis, 1)
    _reshape_to(b, node.input[0], target, node.output[0])


@converter("Transpose")
def _transpose(b, node):
    rank = len(b.shape(node.input[0]))
    perm = list(_attrs(node).get("perm", list(reversed(range(rank)))))
    b.emit("transpose", [node.input[0]], node.output[0], attrs={"perm": perm})


@converter("Concat")
def _concat(b, node):
    names = [n for n in node.input if n]
    rank = len(b.shape(next(n for n in names if not b.is_const(n))))
    axis = _attrs(node)["axis"] % rank
    if any(b.is_const(n) for n in names):
        _concat_with_constants(b, names, axis, node.output[0])
        return
    b.emit("concat", names, node.output[0], attrs={"axis": axis})


def _concat_with_constants(b, names, axis: int, out: str) -> str:
    """Each variable zero-padded to the full length at its offset, the padded ones added, the
    constants added as one shift (a class token before the patches of a vision transformer)."""
    shapes = [b.const(n).shape if b.is_const(n) else b.shape(n) for n in names]
    if any(len(shape) != len(shapes[0]) for shape in shapes):
        b.fail(f"shape mismatch: cannot concatenate {[list(s) for s in shapes]}")
    total = sum(shape[axis] for shape in shapes)
    frame = list(b.shape(next(n for n in names if not b.is_const(n))))
    frame[axis] = total
    shift, padded, offset = np.zeros(frame), [], 0
    for name, shape in zip(names, shapes):
        where = [slice(None)] * len(frame)
        where[axis] = slice(offset, offset + shape[axis])
        if b.is_const(name):
            shift[tuple(where)] = b.const(name)
        else:
            pads = [(0, 0)] * len(frame)
            pads[axis] = (offset, total - offset - shape[axis])
            padded.append(_pad(b, name, pads, 0.0))
        offset += shape[axis]
    result = padded[0]
    for other in padded[1:]:
        result = _add_vars(b, result, other)
    return _affine(b, result, shift=shift, out=out)


@converter("Slice")
def _slice(b, node):
    a = _attrs(node)
    shape = b.shape(node.input[0])
    if "starts" in a:  # opset < 10
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    else:
        starts, ends = _optional(b, node, 1), _optional(b, node, 2)
        axes, steps = _optional(b, node, 3), _optional(b, node, 4)
    axes = list(range(len(starts))) if axes is None else [int(v) % len(shape) for v in axes]
    steps = [1] * len(starts) if steps is None else [int(v) for v in steps]
    index = [slice(None)] * len(shape)
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step <= 0:
            b.fail("Slice with a non-positive step is not supported")
        start, end, _ = slice(int(max(min(start, 2**62), -2**62)),
                              int(max(min(end, 2**62), -2**62))).indices(shape[axis])
        index[axis] = slice(start, max(start, end), step)
    b.emit("slice", [node.input[0]], node.output[0], attrs={"index": tuple(index)})


@converter("Split")
def _split(b, node):
    """One slice per output along the axis: sizes given (input or attribute), else equal parts
    (the last one smaller when the axis does not divide)."""
    a = _attrs(node)
    x = node.input[0]
    shape = b.shape(x)
    axis = a.get("axis", 0) % len(shape)
    outputs = list(node.output)
    sizes = _optional(b, node, 1)
    if sizes is None:
        sizes = a.get("split")
    if sizes is None:
        part = -(-shape[axis] // len(outputs))
        sizes = [min(part, shape[axis] - k * part) for k in range(len(outputs))]
    sizes = [int(s) for s in sizes]
    if len(sizes) != len(outputs) or sum(sizes) != shape[axis] or min(sizes) < 0:
        b.fail(f"shape mismatch: Split sizes {sizes} do not cut an axis of {shape[axis]} into {len(outputs)}")
    start = 0
    for out, size in zip(outputs, sizes):
        index = [slice(None)] * len(shape)
        index[axis] = slice(start, start + size, 1)
        if out:
            b.emit("slice", [x], out, attrs={"index": tuple(index)})
        start += size


# The smooth ops and the products of variables register themselves (and are called above).
from verifier.graph.onnx_math_ops import variable_division, variable_matmul, variable_product  # noqa: E402
