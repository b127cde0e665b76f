"""Small ONNX models built in memory with onnx.helper, for the loader, evaluator and bound tests.

`OnnxBuilder` collects nodes and initializers and turns them into a ModelProto or a file.
`FAMILIES` maps an op family to a generator `fn(rng) -> ModelProto` of random small models that
use it; `COMBOS` holds deeper random networks mixing several families. Every generated model has
one float input with a leading batch dimension (1, or symbolic) and one output.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT
INT64_MAX = np.iinfo(np.int64).max


class OnnxBuilder:
    """Add nodes and constants, then `model(output)` or `save(path, output)`."""

    def __init__(self, input_shape, opset: int = 13, rng=None, input_name: str = "x",
                 elem_type: int = FLOAT, name: str = "factory"):
        self.input_shape = list(input_shape)  # ints, or strings for symbolic dims
        self.opset = opset
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.input = input_name
        self.elem_type = elem_type
        self.name = name
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def fresh(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, value, name: str | None = None, dtype=None) -> str:
        """An initializer holding `value` (float32 unless it is an integer array or dtype says)."""
        array = np.asarray(value)
        if dtype is not None:
            array = array.astype(dtype)
        elif array.dtype.kind == "f":
            array = array.astype(np.float32)
        elif array.dtype.kind in "iu":
            array = array.astype(np.int64)
        name = name or self.fresh("c")
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def ints(self, values, name: str | None = None) -> str:
        return self.const(np.asarray(values, dtype=np.int64), name)

    def weight(self, *shape, fan_in: int | None = None, scale: float = 1.0) -> str:
        """A random normal initializer scaled by 1/sqrt(fan_in) (default: all but the first dim)."""
        fan_in = fan_in or int(np.prod(shape[1:])) or 1
        return self.const(self.rng.normal(size=shape) * scale / np.sqrt(fan_in))

    def add(self, op_type: str, inputs, outputs: int = 1, name: str | None = None, **attrs):
        """Append a node; returns its output name (or the list of names when outputs > 1)."""
        name = name or self.fresh(op_type)
        outs = [f"{name}_out{i}" if i else f"{name}_out" for i in range(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    def model(self, output: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, self.name,
            [helper.make_tensor_value_info(self.input, self.elem_type, self.input_shape)],
            [helper.make_tensor_value_info(output, self.elem_type, None)],
            self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = min(model.ir_version, 8)  # what onnxruntime accepts
        # the output's shape, as ONNX shape inference sees it (the checker wants one)
        inferred = onnx.shape_inference.infer_shapes(model)
        known = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
        if output in known and known[output].type.tensor_type.HasField("shape"):
            model.graph.output[0].CopyFrom(known[output])
        else:
            model.graph.output[0].type.tensor_type.shape.SetInParent()  # rank unknown
        return model

    def save(self, path, output: str) -> str:
        return save(self.model(output), path)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tests on tiny tensors run faster on one thread, and far faster on a busy machine; import
    this fixture into a test module and mark the module with usefixtures to use it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def save(model: onnx.ModelProto, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return str(path)


def input_shape(model: onnx.ModelProto) -> tuple[int, ...]:
    """The model's input shape with symbolic dimensions set to 1."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims)


def run_onnxruntime(path, x: np.ndarray) -> np.ndarray:
    """onnxruntime's output for each sample of x (B, *input_shape): (B, *output_shape), float64."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    meta = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in meta.shape]
    dtype = np.float64 if "double" in meta.type else np.float32
    outs = [session.run(None, {meta.name: np.asarray(xi, dtype=dtype).reshape(shape)})[0]
            for xi in x]
    return np.stack(outs).astype(np.float64)


# --- helpers for the generators ----------------------------------------------------------------

def _batch_dim(rng):
    """A batch dimension: 1 (exported with batch 1) or symbolic."""
    return 1 if rng.random() < 0.6 else "N"


def _choice(rng, options):
    return options[int(rng.integers(len(options)))]


def _dense(b: OnnxBuilder, x: str, n_in: int, n_out: int, rng, activation: str | None = None) -> str:
    """A Gemm (random transB, with bias) and an optional activation."""
    trans_b = int(rng.integers(2))
    w = b.weight(*((n_out, n_in) if trans_b else (n_in, n_out)), fan_in=n_in)
    y = b.add("Gemm", [x, w, b.weight(n_out, fan_in=1, scale=0.3)], transB=trans_b)
    return b.add(activation, [y]) if activation else y


def _conv(b: OnnxBuilder, x: str, c_in: int, c_out: int, kernel, rng, **attrs) -> str:
    w = b.weight(c_out, c_in // (attrs.get("group") or 1), *kernel)
    inputs = [x, w] + ([b.weight(c_out, fan_in=1, scale=0.3)] if rng.random() < 0.7 else [])
    return b.add("Conv", inputs, **attrs)


def _batchnorm(b: OnnxBuilder, x: str, channels: int, rng) -> str:
    gamma = b.const(rng.uniform(0.5, 1.5, channels))
    beta = b.const(rng.normal(size=channels) * 0.3)
    mean = b.const(rng.normal(size=channels) * 0.3)
    var = b.const(rng.uniform(0.5, 2.0, channels))
    return b.add("BatchNormalization", [x, gamma, beta, mean, var],
                 epsilon=float(rng.choice([1e-5, 1e-3])))


# --- one generator per op family ----------------------------------------------------------------

def gen_gemm(rng) -> onnx.ModelProto:
    n_in, n_out = int(rng.integers(2, 7)), int(rng.integers(1, 6))
    if rng.random() < 0.2:  # transA: the input is (k, 1)
        b = OnnxBuilder([n_in, 1], rng=rng)
        x, trans_a = b.input, 1
    else:
        b = OnnxBuilder([_batch_dim(rng), n_in], rng=rng)
        x, trans_a = b.input, 0
    trans_b = int(rng.integers(2))
    w = b.weight(*((n_out, n_in) if trans_b else (n_in, n_out)), fan_in=n_in)
    inputs = [x, w]
    if rng.random() < 0.8:
        inputs.append(b.weight(*_choice(rng, [(n_out,), (1, n_out), (1, 1)]), fan_in=1))
    y = b.add("Gemm", inputs, transA=trans_a, transB=trans_b,
              alpha=float(rng.uniform(-2, 2)) if rng.random() < 0.5 else None,
              beta=float(rng.uniform(-2, 2)) if rng.random() < 0.5 else None)
    if rng.random() < 0.5:
        y = _dense(b, b.add("Relu", [y]), n_out, int(rng.integers(1, 4)), rng)
    return b.model(y)


def gen_matmul(rng) -> onnx.ModelProto:
    """variable @ constant, optionally followed by an Add of a constant (fused into a bias)."""
    k, n = int(rng.integers(2, 7)), int(rng.integers(1, 6))
    shape = _choice(rng, [[_batch_dim(rng), k], [1, int(rng.integers(1, 4)), k], [k]])
    b = OnnxBuilder(shape, rng=rng)
    y = b.add("MatMul", [b.input, b.weight(k, n)])
    bias = None
    if rng.random() < 0.6:
        bias = _choice(rng, [(n,), (), (1, n)] if len(shape) > 1 else [(n,), ()])
        y = b.add("Add", [y, b.weight(*bias, fan_in=1)] if rng.random() < 0.5
                  else [b.weight(*bias, fan_in=1), y])
    if rng.random() < 0.3 and bias != ():  # a second linear layer right after (merged at load
        # time; scalar biases there: see test_onnx_ops.test_matmul_add_matmul_chain)
        y = b.add("MatMul", [y, b.weight(n, int(rng.integers(1, 6)))])
    elif rng.random() < 0.5:
        y = b.add("MatMul", [b.add("Relu", [y]), b.weight(n, 2)])
    return b.model(y)


def gen_matmul_const_left(rng) -> onnx.ModelProto:
    """constant @ variable: a matrix-vector product or a matrix product on the last two axes."""
    k, m = int(rng.integers(2, 6)), int(rng.integers(1, 5))
    shape = _choice(rng, [[k], [1, k, int(rng.integers(1, 4))], [k, int(rng.integers(1, 4))]])
    b = OnnxBuilder(shape, rng=rng)
    y = b.add("MatMul", [b.weight(m, k), b.input])
    if rng.random() < 0.5:
        y = b.add("Add", [b.add("Relu", [y]), b.weight(1, fan_in=1)])
    return b.model(y)


def gen_arithmetic(rng) -> onnx.ModelProto:
    """Add/Sub/Mul/Div by constants on either side, broadcast constants, Neg."""
    shape = _choice(rng, [[1, int(rng.integers(1, 4)), 3, 4], [_batch_dim(rng), 5], [1, 2, 6]])
    b = OnnxBuilder(shape, rng=rng)
    y, grown = b.input, False
    for _ in range(int(rng.integers(2, 6))):
        op = _choice(rng, ["Add", "Sub", "Mul", "Div", "Neg"])
        if op == "Neg":
            y = b.add("Neg", [y])
            continue
        full = [s if isinstance(s, int) else 1 for s in shape]
        rank = len(full)
        options = [(), (1,), tuple(full[-1:]), tuple(full),  # scalar, trailing, same shape
                   tuple(full[1:2]) + (1,) * (rank - 2) if rank > 2 else (1,)]  # per channel
        if not grown:
            options.append((2,) + tuple(full))  # of higher rank: broadcasts the output up
        const_shape = _choice(rng, options)
        grown = grown or len(const_shape) > rank
        value = rng.normal(size=const_shape)
        if op == "Div":
            value = np.sign(value) * (np.abs(value) + 0.5)
            b_inputs = [y, b.const(value)]
        else:
            c = b.const(value)
            b_inputs = [y, c] if rng.random() < 0.5 else [c, y]
        y = b.add(op, b_inputs)
        shape = list(np.broadcast_shapes(tuple(s if isinstance(s, int) else 1 for s in shape),
                                         const_shape))
    if rng.random() < 0.5:  # something nonlinear reads it (bound tests tighten its input)
        y = b.add(_choice(rng, ["Relu", "Tanh"]), [y])
    return b.model(y)


def gen_residual(rng) -> onnx.ModelProto:
    """Add and Sub of two variable tensors: a residual block and a difference of branches."""
    n = int(rng.integers(2, 6))
    b = OnnxBuilder([_batch_dim(rng), n], rng=rng)
    h = _dense(b, b.input, n, n, rng, "Relu")
    h = _dense(b, h, n, n, rng)
    y = b.add("Add", [h, b.input] if rng.random() < 0.5 else [b.input, h])
    other = _dense(b, b.input, n, n, rng, _choice(rng, ["Relu", "Tanh"]))
    y = b.add(_choice(rng, ["Sub", "Add"]), [y, other] if rng.random() < 0.5 else [other, y])
    if rng.random() < 0.5:  # broadcast of two variables: (n,) against (1, n)
        flat = b.add("Reshape", [b.input, b.ints([n])])
        y = b.add("Sub", [y, flat])
    return b.model(y)


def gen_activation(rng) -> onnx.ModelProto:
    n = int(rng.integers(2, 6))
    b = OnnxBuilder([_batch_dim(rng), n], rng=rng)
    y = b.input
    for _ in range(int(rng.integers(1, 4))):
        y = _dense(b, y, n, n, rng, _choice(rng, ["Relu", "Sigmoid", "Tanh"]))
    return b.model(y)


def _piecewise_linear(b: OnnxBuilder, y: str, n: int, rng) -> str:
    """One of the piecewise-linear activations the loader rewrites into ReLUs."""
    kind = _choice(rng, ["LeakyRelu", "PRelu", "Clip", "ClipMax", "Abs", "HardSigmoid", "Max", "Min"])
    if kind == "LeakyRelu":
        return b.add("LeakyRelu", [y], alpha=float(rng.uniform(0.01, 0.5)))
    if kind == "PRelu":
        return b.add("PRelu", [y, b.const(rng.uniform(-0.5, 0.5, size=n))])
    if kind == "Clip":
        low = float(rng.uniform(-1, 0))
        return b.add("Clip", [y, b.const(np.float32(low)), b.const(np.float32(low + rng.uniform(0.1, 2)))])
    if kind == "ClipMax":
        return b.add("Clip", [y, "", b.const(np.float32(rng.uniform(-0.5, 0.5)))])
    if kind in ("Abs", "HardSigmoid"):
        return b.add(kind, [y])
    other = b.const(rng.normal(size=n) * 0.3) if rng.random() < 0.5 else _dense(b, b.input, n, n, rng)
    return b.add(kind, [y, other])


def gen_piecewise_linear(rng) -> onnx.ModelProto:
    n = int(rng.integers(2, 6))
    b = OnnxBuilder([1, n], rng=rng)
    y = b.input
    for _ in range(int(rng.integers(1, 4))):
        y = _piecewise_linear(b, _dense(b, y, n, n, rng), n, rng)
    return b.model(_dense(b, y, n, 2, rng))


def gen_conv1d(rng) -> onnx.ModelProto:
    groups = int(rng.choice([1, 1, 2]))
    c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    length = int(rng.integers(6, 12))
    b = OnnxBuilder([_batch_dim(rng), c_in, length], rng=rng)
    k = int(rng.integers(1, 4))
    attrs = dict(strides=[int(rng.integers(1, 3))], dilations=[int(rng.integers(1, 3))],
                 group=groups if groups > 1 else None)
    mode = _choice(rng, ["none", "sym", "asym", "same"])
    if mode == "sym":
        p = int(rng.integers(0, 3))
        attrs["pads"] = [p, p]
    elif mode == "asym":
        attrs["pads"] = [int(rng.integers(0, 3)), int(rng.integers(0, 3))]
    elif mode == "same":  # onnxruntime refuses dilations with SAME padding
        attrs.update(auto_pad="SAME_UPPER", dilations=None)
    y = _conv(b, b.input, c_in, c_out, [k], rng, **attrs)
    if rng.random() < 0.5:
        y = b.add("Relu", [y])
    return b.model(y)


def gen_conv2d(rng) -> onnx.ModelProto:
    groups = int(rng.choice([1, 1, 2, 3]))
    c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    h, w = int(rng.integers(5, 9)), int(rng.integers(5, 9))
    b = OnnxBuilder([_batch_dim(rng), c_in, h, w], rng=rng)
    kernel = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
    attrs = dict(strides=[int(rng.integers(1, 3)), int(rng.integers(1, 3))],
                 dilations=[int(rng.integers(1, 3)), int(rng.integers(1, 3))] if rng.random() < 0.5 else None,
                 group=groups if groups > 1 else None,
                 kernel_shape=kernel if rng.random() < 0.5 else None)
    mode = _choice(rng, ["none", "sym", "asym", "same"])
    if mode == "sym":
        p = [int(rng.integers(0, 3)), int(rng.integers(0, 3))]
        attrs["pads"] = p + p
    elif mode == "asym":
        attrs["pads"] = [int(v) for v in rng.integers(0, 3, 4)]
    elif mode == "same":  # onnxruntime refuses dilations with SAME padding
        attrs.update(auto_pad="SAME_UPPER", dilations=None)
    y = _conv(b, b.input, c_in, c_out, kernel, rng, **attrs)
    if rng.random() < 0.5:
        y = b.add("Relu", [y])
    return b.model(y)


def gen_batchnorm(rng) -> onnx.ModelProto:
    c = int(rng.integers(1, 4))
    shape = _choice(rng, [[_batch_dim(rng), c, 4, 5], [_batch_dim(rng), c], [1, c, 6]])
    b = OnnxBuilder(shape, rng=rng)
    y = b.input
    if len(shape) == 4 and rng.random() < 0.5:
        y = _conv(b, y, c, c, [3, 3], rng, pads=[1, 1, 1, 1])
    y = _batchnorm(b, y, c, rng)
    if rng.random() < 0.5:
        y = b.add("Relu", [y])
    return b.model(y)


def _pool_attrs(rng, allow_dilation: bool):
    kernel = [int(rng.integers(1, 4)), int(rng.integers(2, 4))]
    attrs = dict(kernel_shape=kernel,
                 strides=[int(rng.integers(1, 3)), int(rng.integers(1, 4))] if rng.random() < 0.8 else None)
    if allow_dilation and rng.random() < 0.3:
        attrs["dilations"] = [int(rng.integers(1, 3)), int(rng.integers(1, 3))]
    mode = _choice(rng, ["none", "pads", "pads", "same"])
    if mode == "pads":  # pads must be smaller than the kernel
        attrs["pads"] = [int(rng.integers(0, kernel[0])), int(rng.integers(0, kernel[1])),
                         int(rng.integers(0, kernel[0])), int(rng.integers(0, kernel[1]))]
    elif mode == "same":
        # onnxruntime's SAME pooling ignores dilations (against the ONNX spec) and fails on
        # negative total pads (stride > kernel): keep to the cases where all agree
        attrs.update(auto_pad="SAME_UPPER", dilations=None,
                     strides=[min(s, k) for s, k in zip(attrs["strides"] or [1, 1], kernel)])
    return attrs


def gen_maxpool(rng) -> onnx.ModelProto:
    c = int(rng.integers(1, 4))
    b = OnnxBuilder([_batch_dim(rng), c, int(rng.integers(5, 9)), int(rng.integers(5, 9))], rng=rng)
    y = b.input
    if rng.random() < 0.5:
        y = _conv(b, y, c, c, [2, 2], rng)
    y = b.add("MaxPool", [y], **_pool_attrs(rng, allow_dilation=True))
    return b.model(y)


def gen_avgpool(rng) -> onnx.ModelProto:
    c = int(rng.integers(1, 4))
    b = OnnxBuilder([_batch_dim(rng), c, int(rng.integers(5, 9)), int(rng.integers(5, 9))], rng=rng)
    attrs = _pool_attrs(rng, allow_dilation=False)
    attrs["count_include_pad"] = int(rng.integers(2))
    y = b.add("AveragePool", [b.input], **attrs)
    if rng.random() < 0.5:
        y = b.add("Relu", [y])
    return b.model(y)


def gen_global_avgpool(rng) -> onnx.ModelProto:
    c = int(rng.integers(1, 4))
    b = OnnxBuilder([_batch_dim(rng), c, int(rng.integers(1, 6)), int(rng.integers(1, 6))], rng=rng)
    y = b.add("GlobalAveragePool", [b.add("Relu", [b.input])])
    if rng.random() < 0.5:
        y = b.add("Flatten", [y])
    return b.model(y)


def gen_pad(rng) -> onnx.ModelProto:
    shape = _choice(rng, [[1, 2, 3, 4], [_batch_dim(rng), 5], [1, 3, 4]])
    b = OnnxBuilder(shape, rng=rng)
    rank = len(shape)
    pads = [0] + [int(v) for v in rng.integers(0, 3, rank - 1)]  # never on the batch axis
    pads += [0] + [int(v) for v in rng.integers(0, 3, rank - 1)]
    inputs = [b.input, b.ints(pads)]
    if rng.random() < 0.7:
        inputs.append(b.const(np.float32(rng.normal() * 2)))  # a non-zero constant_value
    y = b.add("Pad", inputs, mode="constant")
    if rng.random() < 0.5:
        y = b.add("Tanh", [y])
    return b.model(y)


def gen_flatten(rng) -> onnx.ModelProto:
    shape = _choice(rng, [[1, 2, 3, 4], [1, 3, 4], [_batch_dim(rng), 5]])
    b = OnnxBuilder(shape, rng=rng)
    axis = int(rng.integers(-len(shape), len(shape) + 1))
    y = b.add("Flatten", [b.add("Relu", [b.input])], axis=axis)
    return b.model(y)


def gen_reshape(rng) -> onnx.ModelProto:
    b = OnnxBuilder([1, 2, 3, 4], rng=rng)
    target = _choice(rng, [[0, -1], [0, 0, -1], [1, -1, 4], [0, 6, 4], [-1], [0, 2, 2, 3, 2],
                           [1, 0, 0, 2, 2]])
    y = b.add("Reshape", [b.add("Sigmoid", [b.input]), b.ints(target)])
    if rng.random() < 0.5:
        y = b.add("Reshape", [y, b.ints([1, -1])])
    return b.model(y)


def gen_transpose(rng) -> onnx.ModelProto:
    shape = _choice(rng, [[1, 2, 3, 4], [1, 3, 4], [_batch_dim(rng), 5]])
    b = OnnxBuilder(shape, rng=rng)
    perm = [int(v) for v in rng.permutation(len(shape))] if rng.random() < 0.8 else None
    y = b.add("Transpose", [b.input], perm=perm)
    return b.model(b.add("Relu", [y]))


def gen_concat(rng) -> onnx.ModelProto:
    shape = _choice(rng, [[1, 2, 3, 4], [_batch_dim(rng), 5], [1, 3, 4]])
    b = OnnxBuilder(shape, rng=rng)
    one = b.add("Relu", [b.input])
    two = b.add("Mul", [b.add("Tanh", [b.input]), b.const(rng.normal())])
    axis = int(rng.integers(-len(shape), len(shape)))
    branches = [one, two] + ([b.input] if rng.random() < 0.5 else [])
    return b.model(b.add("Concat", list(rng.permutation(branches)), axis=axis))


def gen_slice(rng) -> onnx.ModelProto:
    shape = _choice(rng, [[1, 4, 5, 6], [1, 7], [1, 5, 6]])
    b = OnnxBuilder(shape, rng=rng)
    rank = len(shape)
    axes = sorted(int(a) for a in rng.choice(np.arange(1, rank), int(rng.integers(1, rank)), replace=False))
    starts, ends, steps = [], [], []
    for axis in axes:
        n = shape[axis]
        start = int(rng.integers(-n, n))
        end = _choice(rng, [int(rng.integers(-n, n + 1)), INT64_MAX, n + 3, -n - 5])
        starts.append(start)
        ends.append(end)
        steps.append(int(rng.integers(1, 3)))
    # a non-empty result: the end past the start (in the positive-index sense)
    for i, axis in enumerate(axes):
        n = shape[axis]
        s = starts[i] % n if starts[i] < 0 else starts[i]
        e = min(max(ends[i] + n if ends[i] < 0 else ends[i], 0), n)
        if e <= s:
            ends[i] = INT64_MAX
    axes_signed = [a - rank if rng.random() < 0.3 else a for a in axes]
    inputs = [b.input, b.ints(starts), b.ints(ends), b.ints(axes_signed)]
    if rng.random() < 0.7:
        inputs.append(b.ints(steps))
    y = b.add("Slice", inputs)
    return b.model(b.add("Relu", [y]))


def gen_squeeze(rng) -> onnx.ModelProto:
    """Unsqueeze (opset 13: axes input) then Squeeze, with and without axes."""
    shape = _choice(rng, [[1, 3, 1, 4], [1, 5], [1, 2, 3]])
    b = OnnxBuilder(shape, rng=rng)
    rank = len(shape)
    axes = _choice(rng, [[0], [-1], [1, 3], [rank]])
    y = b.add("Unsqueeze", [b.add("Relu", [b.input]), b.ints(axes)])
    new_shape = list(shape)
    for a in sorted(a % (rank + len(axes)) for a in axes):
        new_shape.insert(a, 1)
    ones = [i for i, s in enumerate(new_shape) if s == 1 and i > 0]
    if rng.random() < 0.5 and ones:
        y = b.add("Squeeze", [y, b.ints([ones[-1] - len(new_shape)])])
    else:
        y = b.add("Squeeze", [y])
    return b.model(y)


def gen_identity(rng) -> onnx.ModelProto:
    """Identity, Dropout (inference: identity) and a Constant node feeding an Add."""
    n = int(rng.integers(2, 6))
    b = OnnxBuilder([_batch_dim(rng), n], rng=rng)
    y = b.add("Identity", [b.input])
    ratio = b.const(np.float32(0.3))
    if rng.random() < 0.5:
        y = b.add("Dropout", [y, ratio], outputs=2)[0]
    else:
        y = b.add("Dropout", [y])
    value = b.add("Constant", [], value=numpy_helper.from_array(
        rng.normal(size=n).astype(np.float32), "v"))
    y = b.add("Add", [b.add("Relu", [y]), value])
    return b.model(b.add("Identity", [y]))


def gen_shape_chain(rng) -> onnx.ModelProto:
    """Shape -> Gather -> Concat -> Reshape, folded to a constant target at load time."""
    shape = _choice(rng, [[1, 2, 3, 4], ["N", 3, 4], [1, 6, 2]])
    opset = 15 if rng.random() < 0.5 else 13
    b = OnnxBuilder(shape, rng=rng, opset=opset)
    h = b.add("Relu", [b.input])
    if opset == 15:  # Shape with start/end attributes
        batch = b.add("Shape", [h], start=0, end=1)
    else:
        batch = b.add("Gather", [b.add("Shape", [h]), b.ints([0])], axis=0)
    target = b.add("Concat", [batch, b.ints([-1])], axis=0)
    y = b.add("Reshape", [h, target])
    return b.model(_dense(b, y, int(np.prod([s for s in shape[1:]])), 3, rng))


def gen_conv_bn_pool_dense(rng) -> onnx.ModelProto:
    """conv -> bn -> relu -> maxpool -> flatten -> gemm (-> relu -> gemm)."""
    c_in, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    b = OnnxBuilder([1, c_in, 6, 6], rng=rng)
    y = _conv(b, b.input, c_in, c, [3, 3], rng, pads=[1, 1, 1, 1])
    y = b.add("Relu", [_batchnorm(b, y, c, rng)])
    y = b.add("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
    y = b.add("Flatten", [y])
    y = _dense(b, y, c * 9, 4, rng, "Relu")
    return b.model(_dense(b, y, 4, 3, rng))


def gen_residual_conv(rng) -> onnx.ModelProto:
    c = int(rng.integers(1, 3))
    b = OnnxBuilder([1, c, 5, 5], rng=rng)
    h = b.add("Relu", [_conv(b, b.input, c, c, [3, 3], rng, pads=[1, 1, 1, 1])])
    h = _conv(b, h, c, c, [3, 3], rng, pads=[1, 1, 1, 1])
    y = b.add("Relu", [b.add("Add", [h, b.input])])
    y = b.add("Relu", [b.add("Sub", [y, _conv(b, b.input, c, c, [1, 1], rng)])])
    return b.model(_dense(b, b.add("Flatten", [y]), c * 25, 3, rng))


def gen_concat_branches(rng) -> onnx.ModelProto:
    n = int(rng.integers(2, 5))
    b = OnnxBuilder([1, n], rng=rng)
    one = _dense(b, b.input, n, 3, rng, "Relu")
    two = _dense(b, b.input, n, 2, rng, _choice(rng, ["Sigmoid", "Tanh"]))
    y = b.add("Concat", [one, two], axis=1)
    return b.model(_dense(b, y, 5, 3, rng))


def gen_sigmoid_tanh_mlp(rng) -> onnx.ModelProto:
    n = int(rng.integers(2, 5))
    b = OnnxBuilder([1, n], rng=rng)
    y = b.input
    for _ in range(int(rng.integers(2, 4))):
        y = _dense(b, y, n, n, rng, _choice(rng, ["Sigmoid", "Tanh"]))
    return b.model(_dense(b, y, n, 2, rng))


def gen_avgpool_net(rng) -> onnx.ModelProto:
    b = OnnxBuilder([1, 2, 6, 6], rng=rng)
    y = b.add("Relu", [_conv(b, b.input, 2, 2, [3, 3], rng, pads=[1, 1, 1, 1])])
    y = b.add("AveragePool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
              count_include_pad=int(rng.integers(2)))
    y = b.add("Relu", [_conv(b, y, 2, 2, [2, 2], rng)])
    y = b.add("GlobalAveragePool", [y])
    return b.model(b.add("Flatten", [y]))


def gen_pad_net(rng) -> onnx.ModelProto:
    b = OnnxBuilder([1, 1, 4, 4], rng=rng)
    y = b.add("Pad", [b.input, b.ints([0, 0, 1, 2, 0, 0, 2, 1]), b.const(np.float32(rng.normal()))])
    y = b.add("Relu", [_conv(b, y, 1, 2, [3, 3], rng, strides=[2, 2])])
    y = b.add("Pad", [y, b.ints([0, 0, 1, 0, 0, 0, 0, 1]), b.const(np.float32(-0.5))])
    y = b.add("MaxPool", [y], kernel_shape=[2, 2])
    return b.model(b.add("Flatten", [y]))


def gen_broadcast_net(rng) -> onnx.ModelProto:
    """Constants that broadcast the variable up (to a higher rank, along size-1 dims) between
    nonlinear layers, and a broadcasting sum of two variables."""
    n = int(rng.integers(2, 4))
    b = OnnxBuilder([1, n], rng=rng)
    y = b.add("Add", [b.input, b.weight(2, 1, n, fan_in=1)])  # (2, 1, n)
    y = b.add("Relu", [y])
    y = b.add("Sub", [b.weight(1, 3, 1, fan_in=1), y] if rng.random() < 0.5
              else [y, b.weight(1, 3, 1, fan_in=1)])  # (2, 3, n)
    y = b.add("Tanh", [y])
    y = b.add("Add", [y, b.add("Relu", [b.input])])  # (2, 3, n) + (1, n)
    y = b.add("Mul", [b.add("Sigmoid", [y]), b.weight(3, 1, fan_in=1)])
    return b.model(_dense(b, b.add("Reshape", [y, b.ints([1, -1])]), 6 * n, 2, rng))


def gen_shape_ops_net(rng) -> onnx.ModelProto:
    """transpose / reshape / slice / squeeze between nonlinear layers."""
    b = OnnxBuilder([1, 2, 3, 4], rng=rng)
    y = b.add("Transpose", [b.add("Relu", [b.input])], perm=[0, 3, 1, 2])  # (1, 4, 2, 3)
    y = b.add("Slice", [y, b.ints([1, -2]), b.ints([INT64_MAX, 3]), b.ints([1, 3]), b.ints([2, 1])])
    y = b.add("Reshape", [y, b.ints([0, -1])])  # (1, 2*2*2) = (1, 8)
    y = _dense(b, y, 8, 4, rng, "Relu")
    y = b.add("Unsqueeze", [y, b.ints([1])])  # (1, 1, 4)
    y = b.add("Transpose", [y], perm=[0, 2, 1])  # (1, 4, 1)
    y = b.add("Squeeze", [y, b.ints([2])])
    return b.model(_dense(b, y, 4, 2, rng))


FAMILIES = {
    "gemm": gen_gemm,
    "matmul": gen_matmul,
    "matmul_const_left": gen_matmul_const_left,
    "arithmetic": gen_arithmetic,
    "residual": gen_residual,
    "activation": gen_activation,
    "piecewise_linear": gen_piecewise_linear,
    "conv1d": gen_conv1d,
    "conv2d": gen_conv2d,
    "batchnorm": gen_batchnorm,
    "maxpool": gen_maxpool,
    "avgpool": gen_avgpool,
    "global_avgpool": gen_global_avgpool,
    "pad": gen_pad,
    "flatten": gen_flatten,
    "reshape": gen_reshape,
    "transpose": gen_transpose,
    "concat": gen_concat,
    "slice": gen_slice,
    "squeeze": gen_squeeze,
    "identity": gen_identity,
    "shape_chain": gen_shape_chain,
}

COMBOS = {
    "conv_bn_pool_dense": gen_conv_bn_pool_dense,
    "residual_conv": gen_residual_conv,
    "concat_branches": gen_concat_branches,
    "sigmoid_tanh_mlp": gen_sigmoid_tanh_mlp,
    "avgpool_net": gen_avgpool_net,
    "pad_net": gen_pad_net,
    "shape_ops_net": gen_shape_ops_net,
    "broadcast_net": gen_broadcast_net,
}

ALL = {**FAMILIES, **COMBOS}


def make(family: str, seed: int, directory) -> str:
    """Save the random model of `family` for `seed` under directory; returns its path."""
    model = ALL[family](np.random.default_rng(seed))
    onnx.checker.check_model(model)
    return save(model, Path(directory) / f"{family}_{seed}.onnx")
