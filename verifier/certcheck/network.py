"""The checker's own reading of an ONNX model: a chain of primitives on flat vectors.

Supported: MatMul and Gemm with constant weights, Conv (1-D, 2-D), Add, Sub and Mul with a
constant, Relu, and the ops that only rename or reshape (Flatten, Reshape, Identity, Dropout,
Constant). Each op reads the output of the one before it (a chain); anything else is named in
one error. Every primitive maps a batch of flat vectors (N, n_in) to (N, n_out) in the ONNX
tensor's C order, so reshapes cost nothing.

A linear primitive y = A x + b exposes A through `lin(x, part)` (part: the full weights, their
positive part, their negative part, or their absolute values), A^T through `lin_t`, the bias b,
and the length of its dot products (`fan_in` for A x, `fan_out` for A^T lam): from these the
bound and error rules of bounds.py are written once for all of them. `rounding(mag)` bounds how
far onnxruntime's float32 result can be from the exact op for inputs of magnitude <= mag
(float_error.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from verifier.certcheck import onnx_proto

from verifier.certcheck.float_error import dot_product_gamma, merged_gamma, shifted_gamma
from verifier.certcheck.rounding import FLOAT32_UNIT, UNIT, gamma, inflate


class CheckerError(Exception):
    """A user-facing problem with the inputs (unsupported model, malformed file)."""


_PARTS = {
    "full": lambda w: w,
    "pos": lambda w: np.maximum(w, 0.0),
    "neg": lambda w: np.minimum(w, 0.0),
    "abs": np.abs,
}


class Linear:
    """y = A x + bias, A given by lin/lin_t."""

    def extra(self, mag: np.ndarray) -> np.ndarray | float:
        """A bound on how far the exact op is from A x + bias for |x| <= mag (0: exact)."""
        return 0.0

    # float32 rounding: at most round_gamma (|A| |x| + round_bias), |A| given by round_abs
    round_gamma = 4 * FLOAT32_UNIT
    round_bias: np.ndarray | float = 0.0

    def round_abs(self, mag: np.ndarray) -> np.ndarray:
        return self.lin(mag, "abs")

    def rounding(self, mag: np.ndarray) -> np.ndarray:
        """The bound on |float32 result - exact result| (rows of mag), rounded up."""
        size = self.round_abs(mag) + self.round_bias
        return inflate(self.round_gamma * size, self.fan_in + 2)

    kind = "linear"
    bias: np.ndarray | None = None
    fan_in = 1
    fan_out = 1

    def lin(self, x: np.ndarray, part: str = "full") -> np.ndarray:
        raise NotImplementedError

    def lin_t(self, lam: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        y = self.lin(x)
        return y + self.bias if self.bias is not None else y


@dataclass
class Dense(Linear):
    """x (.., k) @ W (k, n) over the last axis, `lead` rows of it per sample, optional bias.

    A Dense made by merging others (see `merge_linear`) carries bounds on how far its float64
    weights and bias are from the exact ones: |W_exact - W| <= W_error, |b_exact - b| <=
    bias_error; `extra(mag)` turns them into a bound on |(A_exact - A) x + b_exact - b|."""

    W: np.ndarray
    lead: int
    bias: np.ndarray | None = None
    W_error: np.ndarray | None = None
    bias_error: np.ndarray | None = None
    _parts: dict = field(default_factory=dict, repr=False)

    def extra(self, mag: np.ndarray) -> np.ndarray | float:
        if self.W_error is None and self.bias_error is None:
            return 0.0
        k, n = self.W.shape
        total = np.zeros(self.n_out)
        if self.W_error is not None:
            total = total + (mag.reshape(-1, k) @ self.W_error).reshape(-1)
        if self.bias_error is not None:
            total = total + self.bias_error
        return inflate(total, k + 2)

    round_W: np.ndarray | None = None  # |A| of the float32 chain (merged Dense); None: |W|

    def __post_init__(self):
        self.fan_in = self.W.shape[0] + (1 if self.bias is not None else 0)
        self.fan_out = self.W.shape[1]
        self.n_in = self.lead * self.W.shape[0]
        self.n_out = self.lead * self.W.shape[1]
        if self.round_W is None:  # one float32 matmul (float_error.dot_product_gamma)
            self.round_gamma = dot_product_gamma(self.W.shape[0])
            self.round_bias = 0.0 if self.bias is None else np.abs(self.bias)

    def round_abs(self, mag):
        if self.round_W is None:
            return self.lin(mag, "abs")
        k, n = self.round_W.shape
        return (mag.reshape(-1, k) @ self.round_W).reshape(*mag.shape[:-1], self.lead * n)

    def weights(self, part: str) -> np.ndarray:
        if part not in self._parts:
            self._parts[part] = np.ascontiguousarray(_PARTS[part](self.W))
        return self._parts[part]

    def lin(self, x, part="full"):
        k, n = self.W.shape
        return (x.reshape(-1, k) @ self.weights(part)).reshape(*x.shape[:-1], self.lead * n)

    def lin_t(self, lam):
        k, n = self.W.shape
        if "t" not in self._parts:
            self._parts["t"] = np.ascontiguousarray(self.W.T)
        return (lam.reshape(-1, n) @ self._parts["t"]).reshape(*lam.shape[:-1], self.lead * k)


@dataclass
class Conv(Linear):
    """2-D convolution (1-D ones get a unit width) on a (1, C, H, W) sample, no auto_pad."""

    W: np.ndarray  # (C_out, C_in / groups, kh, kw)
    in_chw: tuple
    out_chw: tuple
    stride: tuple
    pads: tuple  # (top, left, bottom, right)
    dilation: tuple
    groups: int
    bias: np.ndarray | None = None
    _parts: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        window = int(np.prod(self.W.shape[1:]))
        self.fan_in = window + (1 if self.bias is not None else 0)
        self.fan_out = (self.W.shape[0] // self.groups) * self.W.shape[2] * self.W.shape[3]
        self.n_in = int(np.prod(self.in_chw))
        self.n_out = int(np.prod(self.out_chw))
        self.round_gamma = dot_product_gamma(window)  # a dot product per output (im2col)
        if self.bias is not None:
            self.bias = np.repeat(self.bias, self.out_chw[1] * self.out_chw[2])
            self.round_bias = np.abs(self.bias)

    def weights(self, part):
        if part not in self._parts:
            self._parts[part] = _PARTS[part](self.W)
        return self._parts[part]

    def lin(self, x, part="full"):
        lead = x.shape[:-1]
        image = x.reshape(-1, *self.in_chw)
        top, left, bottom, right = self.pads
        padded = np.pad(image, ((0, 0), (0, 0), (top, bottom), (left, right)))
        (kh, kw), (sh, sw), (dh, dw) = self.W.shape[2:], self.stride, self.dilation
        _, ho, wo = self.out_chw
        windows = sliding_window_view(padded, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
        windows = windows[:, :, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw, ::dh, ::dw]
        W = self.weights(part)
        per_in, per_out = self.in_chw[0] // self.groups, W.shape[0] // self.groups
        outs = []
        for g in range(self.groups):
            part_windows = windows[:, g * per_in:(g + 1) * per_in]
            y = np.tensordot(part_windows, W[g * per_out:(g + 1) * per_out], axes=([1, 4, 5], [1, 2, 3]))
            outs.append(np.moveaxis(y, 3, 1))
        y = np.concatenate(outs, axis=1) if len(outs) > 1 else outs[0]
        return np.ascontiguousarray(y).reshape(*lead, self.n_out)

    def lin_t(self, lam):
        lead = lam.shape[:-1]
        grad = lam.reshape(-1, *self.out_chw)
        c_in, h, w = self.in_chw
        top, left, bottom, right = self.pads
        (kh, kw), (sh, sw), (dh, dw) = self.W.shape[2:], self.stride, self.dilation
        _, ho, wo = self.out_chw
        per_in, per_out = c_in // self.groups, self.W.shape[0] // self.groups
        out = np.zeros((grad.shape[0], c_in, h + top + bottom, w + left + right))
        for g in range(self.groups):
            # cols[n, y, x, c, i, j] = sum_o grad[n, o, y, x] W[o, c, i, j]
            cols = np.tensordot(grad[:, g * per_out:(g + 1) * per_out], self.W[g * per_out:(g + 1) * per_out],
                                axes=([1], [0]))
            cols = np.moveaxis(cols, 3, 1)  # (n, c, y, x, i, j)
            for i in range(kh):
                for j in range(kw):
                    rows = slice(i * dh, i * dh + (ho - 1) * sh + 1, sh)
                    columns = slice(j * dw, j * dw + (wo - 1) * sw + 1, sw)
                    out[:, g * per_in:(g + 1) * per_in, rows, columns] += cols[..., i, j]
        out = out[:, :, top:top + h, left:left + w]
        return np.ascontiguousarray(out).reshape(*lead, self.n_in)


@dataclass
class Affine(Linear):
    """Elementwise x * scale + shift (flat arrays, either may be absent)."""

    size: int
    scale: np.ndarray | None = None
    shift: np.ndarray | None = None

    def __post_init__(self):
        self.bias = self.shift
        self.n_in = self.n_out = self.size
        self.fan_in = self.fan_out = 1
        self.round_bias = 0.0 if self.shift is None else np.abs(self.shift)

    def lin(self, x, part="full"):
        if self.scale is None:
            return {"full": x, "pos": x, "abs": x, "neg": np.zeros_like(x)}[part]
        return x * _PARTS[part](self.scale)

    def lin_t(self, lam):
        return lam if self.scale is None else lam * self.scale


@dataclass
class Relu:
    kind = "relu"
    layer: int
    size: int

    @property
    def n_in(self):
        return self.size

    @property
    def n_out(self):
        return self.size

    def evaluate(self, x):
        return np.maximum(x, 0.0)


@dataclass
class Network:
    """prims[i] maps value i to value i + 1; value 0 is the input. relu_at[k]: the index of the
    k-th ReLU primitive, whose input (value relu_at[k]) is layer k's pre-activation.
    `execution`: the unmerged chain as onnxruntime runs it (for the float32 error bound)."""

    prims: list
    input_size: int
    path: str
    execution: list = field(default_factory=list)

    def __post_init__(self):
        self.relu_at = [i for i, p in enumerate(self.prims) if p.kind == "relu"]
        self.sizes = [self.input_size] + [p.n_out for p in self.prims]

    @property
    def output_size(self) -> int:
        return self.sizes[-1]

    @property
    def relu_sizes(self) -> list[int]:
        return [self.prims[i].size for i in self.relu_at]

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        for prim in self.prims:
            x = prim.evaluate(x)
        return x


# ------------------------------------------------------------------ merging

def merge_linear(prims: list) -> list:
    """The verifier's exact rewrites (verifier/graph/simplify.py), so that interval bounds
    agree with its own: a Dense absorbs a following shift, and two Dense ops become one when
    the product is no larger than the pair (tllverifybench's 2 -> 24 -> 576 -> 1152 chains).
    The merged weights are float64 products: their distance from the exact ones is bounded
    and carried along (Dense.W_error, Dense.bias_error)."""
    out: list = []
    for prim in prims:
        last = out[-1] if out else None
        merged = _merge(last, prim) if isinstance(last, Dense) else None
        if merged is None:
            out.append(prim)
        else:
            out[-1] = merged
    return out


def _merge(first: "Dense", second):
    """The merged Dense, with float32 rounding terms of the chain onnxruntime computes: the
    first op's error passes through |W2| and the second adds its own (as the verifier's
    graph/simplify.rounding_terms)."""
    round_W = first.round_W if first.round_W is not None else np.abs(first.W)
    round_b = first.round_bias if not np.isscalar(first.round_bias) else np.zeros(first.n_out)
    if isinstance(second, Affine) and second.scale is None and second.shift is not None:
        bias = second.shift if first.bias is None else first.bias + second.shift
        rounding = UNIT * np.abs(bias) if first.bias is not None else 0.0
        error = _plus(first.bias_error, rounding)
        merged = Dense(first.W, first.lead, bias, first.W_error, None if error is None else inflate(error, 2),
                       round_W=round_W)
        merged.round_bias = round_b + np.abs(second.shift)
        merged.round_gamma = shifted_gamma(first.round_gamma)
        return merged
    if not isinstance(second, Dense) or second.lead != first.lead:
        return None
    (k_in, k_mid), k_out = first.W.shape, second.W.shape[1]
    if k_in * k_out > k_in * k_mid + k_mid * k_out:
        return None
    absW2 = np.abs(second.W)
    W = first.W @ second.W
    W_error = gamma(k_mid) * (np.abs(first.W) @ absW2)
    if first.W_error is not None:
        W_error = W_error + first.W_error @ absW2
    bias = bias_error = None
    if first.bias is not None or second.bias is not None:
        carried = first.bias.reshape(first.lead, k_mid) @ second.W if first.bias is not None else 0.0
        bias = (np.reshape(carried, -1) + (second.bias if second.bias is not None else 0.0)).astype(np.float64)
        size = np.abs(first.bias).reshape(first.lead, k_mid) @ absW2 if first.bias is not None else 0.0
        size = np.reshape(size, -1) + (np.abs(second.bias) if second.bias is not None else 0.0)
        bias_error = gamma(k_mid + 1) * size
        if first.bias_error is not None:
            bias_error = bias_error + (first.bias_error.reshape(first.lead, k_mid) @ absW2).reshape(-1)
        bias_error = inflate(np.broadcast_to(bias_error, (first.lead * k_out,)), k_mid + 2)
    merged = Dense(W, first.lead, bias, inflate(W_error, k_mid + 2), bias_error,
                   round_W=inflate(round_W @ absW2, k_mid))
    second_b = second.round_bias if not np.isscalar(second.round_bias) else 0.0
    carried_b = (np.reshape(round_b, (first.lead, k_mid)) @ absW2).reshape(-1)
    merged.round_bias = inflate(carried_b + second_b, k_mid)
    merged.round_gamma = merged_gamma(first.round_gamma, second.round_gamma)
    return merged


def _plus(a, b):
    if a is None:
        return None if np.isscalar(b) and b == 0.0 else b
    return a + b


# ------------------------------------------------------------------ the ONNX reader

class _Reader:
    def __init__(self, path: str, model):
        self.path = path
        self.graph = model.graph
        self.constants: dict[str, np.ndarray] = {
            t.name: onnx_proto.to_array(t).astype(np.float64) if _is_float(t.data_type)
            else onnx_proto.to_array(t) for t in self.graph.initializer}
        inputs = [i for i in self.graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            self.fail(f"the checker needs exactly one model input, found {len(inputs)}")
        self.input = inputs[0]
        if self.input.type.tensor_type.elem_type != onnx_proto.FLOAT:
            self.fail("the model input is not float32 (the checker's float32 error bound needs it)")
        self.shape = tuple(d.dim_value if d.dim_value > 0 else 1 for d in self.input.type.tensor_type.shape.dim)
        self.head = self.input.name  # the tensor the chain has reached
        self.aliases: dict[str, str] = {}
        self.prims: list = []
        self.unsupported: list[str] = []

    def fail(self, what: str):
        raise CheckerError(f"{self.path}: {what}")

    def resolve(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def read(self) -> Network:
        size = math.prod(self.shape)
        for node in self.graph.node:
            handler = _HANDLERS.get(node.op_type)
            if handler is None:
                self.unsupported.append(node.op_type)
                continue
            handler(self, node)
        if self.unsupported:
            names = ", ".join(sorted(set(self.unsupported)))
            self.fail(f"the certificate checker does not support the op(s) {names}")
        if len(self.graph.output) != 1 or self.resolve(self.graph.output[0].name) != self.head:
            self.fail("the model output is not the end of a chain of supported ops")
        return Network(merge_linear(self.prims), size, self.path, self.prims)

    # --- helpers for handlers
    def variable(self, node, names) -> tuple[str, list]:
        """The one input that is the chain's head, and the constants among the others."""
        resolved = [self.resolve(n) for n in names if n]
        variables = [n for n in resolved if n not in self.constants]
        if variables != [self.head]:
            self.fail(f"node '{node.name or node.output[0]}' ({node.op_type}): the checker supports chains only "
                      "(each op reads the previous op's output and constants)")
        return self.head, [self.constants[n] if n in self.constants else None for n in resolved]

    def push(self, node, prim, shape):
        self.prims.append(prim)
        self.head = node.output[0]
        self.shape = tuple(shape)

    def node_fail(self, node, what):
        self.fail(f"node '{node.name or node.output[0]}' ({node.op_type}): {what}")


def _is_float(data_type: int) -> bool:
    return data_type in (onnx_proto.FLOAT, onnx_proto.DOUBLE, onnx_proto.FLOAT16)


def _attributes(node) -> dict:
    return {a.name: onnx_proto.attribute_value(a) for a in node.attribute}


def _constant(r: _Reader, node):
    value = _attributes(node).get("value")
    if value is None:
        r.node_fail(node, "only the 'value' form of Constant is supported")
    array = onnx_proto.to_array(value)
    r.constants[node.output[0]] = array.astype(np.float64) if _is_float(value.data_type) else array


def _alias(r: _Reader, node):
    source = r.resolve(node.input[0])
    if source in r.constants:
        r.constants[node.output[0]] = r.constants[source]
    else:
        r.aliases[node.output[0]] = source


def _reshape_to(r: _Reader, node, shape):
    source = r.resolve(node.input[0])
    if source in r.constants:
        r.constants[node.output[0]] = r.constants[source].reshape(shape)
        return
    r.variable(node, [node.input[0]])
    if math.prod(shape) != math.prod(r.shape):
        r.node_fail(node, f"cannot reshape {r.shape} to {tuple(shape)}")
    r.aliases[node.output[0]] = source
    r.shape = tuple(shape)


def _flatten(r: _Reader, node):
    axis = _attributes(node).get("axis", 1)
    source = r.resolve(node.input[0])
    shape = r.constants[source].shape if source in r.constants else r.shape
    axis = axis % len(shape) if shape else 0
    _reshape_to(r, node, (math.prod(shape[:axis]), math.prod(shape[axis:])))


def _reshape(r: _Reader, node):
    target = r.constants.get(r.resolve(node.input[1]))
    if target is None:
        r.node_fail(node, "the target shape must be a constant")
    source = r.resolve(node.input[0])
    current = r.constants[source].shape if source in r.constants else r.shape
    target = [int(t) for t in target]
    target = [current[i] if t == 0 else t for i, t in enumerate(target)]
    if -1 in target:
        known = math.prod(t for t in target if t != -1)
        target[target.index(-1)] = math.prod(current) // max(known, 1)
    _reshape_to(r, node, tuple(target))


def _matmul(r: _Reader, node):
    _, (x, W) = r.variable(node, node.input)
    if W is None and x is not None and x.ndim == 2 and len(r.shape) == 1 and x.shape[1] == r.shape[0]:
        r.push(node, Dense(x.T.astype(np.float64), 1), (x.shape[0],))  # constant @ vector
        return
    if x is not None or W is None or W.ndim != 2 or r.shape[-1] != W.shape[0]:
        r.node_fail(node, "only (variable @ constant 2-D matrix) matching the last axis is supported")
    lead = math.prod(r.shape[:-1])
    r.push(node, Dense(W.astype(np.float64), lead), (*r.shape[:-1], W.shape[1]))


def _gemm(r: _Reader, node):
    a = _attributes(node)
    _, operands = r.variable(node, node.input)
    if operands[0] is not None or operands[1] is None or a.get("transA", 0) or len(r.shape) != 2:
        r.node_fail(node, "only Gemm(variable 2-D A, constant B[, constant C]) without transA is supported")
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    W = (operands[1].T if a.get("transB", 0) else operands[1]).astype(np.float64)
    out_shape = (r.shape[0], W.shape[1])
    W_error = bias = bias_error = None
    if alpha != 1.0:  # alpha W rounded: carry the rounding as an error bound
        W = alpha * W
        W_error = inflate(UNIT * np.abs(W), 1)
    if len(operands) > 2 and operands[2] is not None:
        bias = np.broadcast_to(operands[2], out_shape).astype(np.float64).reshape(-1)
        if beta != 1.0:
            bias = beta * bias
            bias_error = inflate(UNIT * np.abs(bias), 1)
    r.push(node, Dense(W, r.shape[0], bias, W_error, bias_error), out_shape)


def _elementwise(r: _Reader, node):
    _, (x, y) = r.variable(node, node.input)
    const, var_first = (y, True) if x is None else (x, False)
    try:
        full = np.broadcast_to(const, r.shape).astype(np.float64).reshape(-1)
    except ValueError:
        r.node_fail(node, f"the constant of shape {const.shape} does not broadcast to {r.shape}")
    if np.broadcast_shapes(const.shape, r.shape) != r.shape:
        r.node_fail(node, "a constant that broadcasts the variable up is not supported")
    size = math.prod(r.shape)
    if node.op_type == "Add":
        prim = Affine(size, shift=full)
    elif node.op_type == "Sub":
        prim = Affine(size, shift=-full) if var_first else Affine(size, scale=-np.ones(size), shift=full)
    else:  # Mul
        prim = Affine(size, scale=full)
    r.push(node, prim, r.shape)


def _relu(r: _Reader, node):
    r.variable(node, node.input)
    layer = sum(1 for p in r.prims if p.kind == "relu")
    r.push(node, Relu(layer, math.prod(r.shape)), r.shape)


def _conv(r: _Reader, node):
    a = _attributes(node)
    _, operands = r.variable(node, node.input)
    W = operands[1]
    if operands[0] is not None or W is None or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        r.node_fail(node, "only Conv(variable, constant W[, constant b]) with explicit pads is supported")
    spatial = W.ndim - 2
    if spatial not in (1, 2) or len(r.shape) != W.ndim or r.shape[0] != 1:
        r.node_fail(node, "only 1-D and 2-D convolutions of one sample are supported")
    pads = list(a.get("pads", [0] * 2 * spatial))
    stride, dilation = list(a.get("strides", [1] * spatial)), list(a.get("dilations", [1] * spatial))
    in_shape = r.shape[1:]
    if spatial == 1:  # a unit width
        W, in_shape = W[..., None], (*in_shape, 1)
        pads, stride, dilation = [pads[0], 0, pads[1], 0], stride + [1], dilation + [1]
    groups = a.get("group", 1)
    (kh, kw), (h, w) = W.shape[2:], in_shape[1:]
    ho = (h + pads[0] + pads[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + pads[1] + pads[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if in_shape[0] != W.shape[1] * groups or ho < 1 or wo < 1:
        r.node_fail(node, f"weights {W.shape} do not fit the input {r.shape}")
    bias = operands[2].astype(np.float64) if len(operands) > 2 and operands[2] is not None else None
    prim = Conv(W.astype(np.float64), tuple(in_shape), (W.shape[0], ho, wo), tuple(stride), tuple(pads),
                tuple(dilation), groups, bias)
    out_shape = (1, W.shape[0], ho) if spatial == 1 else (1, W.shape[0], ho, wo)
    r.push(node, prim, out_shape)


_HANDLERS = {
    "Constant": _constant, "Identity": _alias, "Dropout": _alias, "Flatten": _flatten, "Reshape": _reshape,
    "MatMul": _matmul, "Gemm": _gemm, "Add": _elementwise, "Sub": _elementwise, "Mul": _elementwise,
    "Relu": _relu, "Conv": _conv,
}


def read_network(path: str) -> Network:
    try:
        model = onnx_proto.load_model(path)
    except Exception as e:  # onnx raises several types for a bad file
        raise CheckerError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    return _Reader(path, model).read()
