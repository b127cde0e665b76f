"""Random small ONNX models for the index, structural and step ops (issue 17, part a), in the
style of onnx_factory: `FAMILIES` maps a family to `fn(rng) -> ModelProto`; `make` saves one.

`EXACT` names the families holding an op with no relaxation (verification only attacks them);
`STEP` those holding a step function (Sign, Floor, Ceil, a Cast to an integer type).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from onnx_factory import OnnxBuilder, _batch_dim, _choice, _conv, _dense, save


def _relu_dense(b, x, n_in, n_out, rng):
    return _dense(b, x, n_in, n_out, rng, "Relu")


# --- constant indices --------------------------------------------------------------------------

def gen_gather(rng) -> onnx.ModelProto:
    """Gather on a random axis with a scalar or an array of indices (negative, repeated)."""
    b = OnnxBuilder([1, 3, 4], rng=rng)
    y = b.add("Relu", [b.input])
    axis = int(rng.integers(0, 3))
    size = (1, 3, 4)[axis]
    if rng.random() < 0.4:
        index = np.int64(rng.integers(-size, size))
    else:
        index = rng.integers(-size, size, size=tuple(rng.integers(1, 4, size=int(rng.integers(1, 3)))))
    y = b.add("Gather", [y, b.const(np.asarray(index, dtype=np.int64))], axis=axis)
    n = int(np.prod(np.take(np.zeros((1, 3, 4)), index, axis=axis).shape))
    y = b.add("Flatten", [b.add("Unsqueeze", [y, b.ints([0])])], axis=1)
    return b.model(_dense(b, y, n, 2, rng))


def gen_expand(rng) -> onnx.ModelProto:
    b = OnnxBuilder([1, 3, 1], rng=rng)
    target = _choice(rng, [[1, 3, 4], [2, 1, 3, 2], [3, 1]])
    y = b.add("Expand", [b.add("Tanh", [b.input]), b.ints(target)])
    y = b.add("Relu", [b.add("Add", [y, b.weight(*np.broadcast_shapes((1, 3, 1), target), fan_in=1)])])
    return b.model(b.add("Flatten", [y], axis=0))


def gen_expand_chain(rng) -> onnx.ModelProto:
    """The shape arithmetic PyTorch exports for x.expand(k, -1): Shape, Gather, Unsqueeze,
    Concat, ConstantOfShape, Equal, Where, then Expand; all of it folds to constants."""
    b = OnnxBuilder([1, 3], rng=rng, opset=11)
    x = b.add("Relu", [b.input])
    width = b.add("Unsqueeze", [b.add("Gather", [b.add("Shape", [x]), b.const(np.int64(1))], axis=0)], axes=[0])
    target = b.add("Concat", [b.ints([int(rng.integers(2, 4))]), width], axis=0)
    ones = b.add("ConstantOfShape", [b.add("Shape", [target])],
                 value=onnx.helper.make_tensor("one", TensorProto.INT64, [1], [1]))
    minus = b.add("Mul", [ones, b.const(np.int64(-1))])
    shape = b.add("Where", [b.add("Equal", [target, minus]), ones, target])
    y = b.add("Expand", [x, shape])
    return b.model(b.add("Flatten", [b.add("Tanh", [y])], axis=0))


def gen_where(rng) -> onnx.ModelProto:
    """Where with a constant condition: variable/constant operands on either side."""
    b = OnnxBuilder([1, 2, 3], rng=rng)
    condition = b.const(rng.random((2, 3)) < 0.5, dtype=bool)
    x = b.add("Relu", [b.input])
    y = b.add("Sigmoid", [b.input]) if rng.random() < 0.5 else b.weight(1, 3, fan_in=1)
    operands = [x, y] if rng.random() < 0.5 else [y, x]
    out = b.add("Where", [condition, *operands])
    return b.model(_dense(b, b.add("Flatten", [out], axis=1), 6, 3, rng))


def gen_scatter_nd(rng) -> onnx.ModelProto:
    """ScatterND with constant indices into variable or constant data, variable or constant
    updates (at least one variable)."""
    b = OnnxBuilder([1, 4, 3], rng=rng)
    x = b.add("Relu", [b.input])
    rows = rng.choice(4, size=2, replace=False)
    indices = b.ints(np.stack([np.zeros(2, dtype=np.int64), rows], 1))  # (2, 2): two rows of x
    kind = int(rng.integers(3))  # 0: both variable, 1: constant data, 2: constant updates
    data = x if kind != 1 else b.weight(1, 4, 3, fan_in=1)
    if kind == 2:
        updates = b.weight(2, 3, fan_in=1)
    else:
        updates = b.add("Slice", [b.add("Tanh", [b.input]), b.ints([0, 0]), b.ints([1, 2]), b.ints([0, 1])])
        updates = b.add("Reshape", [updates, b.ints([2, 3])])
    out = b.add("ScatterND", [data, indices, updates])
    return b.model(_dense(b, b.add("Flatten", [out], axis=1), 12, 3, rng))


# --- spatial ------------------------------------------------------------------------------------

def gen_conv_transpose(rng) -> onnx.ModelProto:
    nd = int(rng.integers(1, 3))
    groups = _choice(rng, [1, 2])
    c_in, c_out = 2 * groups, 2 * groups
    spatial = [int(rng.integers(2, 5)) for _ in range(nd)]
    b = OnnxBuilder([_batch_dim(rng), c_in, *spatial], rng=rng)
    kernel = [int(rng.integers(1, 4)) for _ in range(nd)]
    stride = [int(rng.integers(1, 3)) for _ in range(nd)]
    dilation = [int(rng.integers(1, 3)) for _ in range(nd)]
    pads = [int(rng.integers(0, k)) for k in kernel] + [int(rng.integers(0, k)) for k in kernel]
    output_padding = [int(rng.integers(0, s)) for s in stride]  # onnxruntime: below the stride
    inputs = [b.add("Relu", [b.input]), b.weight(c_in, c_out // groups, *kernel)]
    if rng.random() < 0.7:
        inputs.append(b.weight(c_out, fan_in=1, scale=0.3))
    y = b.add("ConvTranspose", inputs, strides=stride, dilations=dilation, pads=pads, group=groups,
              output_padding=output_padding)
    return b.model(b.add("Relu", [y]))


def gen_resize(rng) -> onnx.ModelProto:
    """Resize (opset 13) by scales or sizes, nearest or linear, every coordinate mode."""
    b = OnnxBuilder([1, 2, 3, 4], rng=rng, opset=13)
    mode = _choice(rng, ["nearest", "linear"])
    transform = _choice(rng, ["half_pixel", "asymmetric", "pytorch_half_pixel", "align_corners",
                              "tf_half_pixel_for_nn"] if mode == "nearest" else
                        ["half_pixel", "asymmetric", "pytorch_half_pixel", "align_corners"])
    empty = b.const(np.zeros(0, dtype=np.float32))
    if rng.random() < 0.5:
        scales = b.const(np.array([1, 1, _choice(rng, [2.0, 1.5, 0.5, 3.0]), _choice(rng, [2.0, 0.75, 1.0])],
                                  dtype=np.float32))
        inputs = [b.add("Relu", [b.input]), empty, scales]
    else:
        inputs = [b.add("Relu", [b.input]), empty, empty, b.ints([1, 2, int(rng.integers(1, 8)), int(rng.integers(1, 8))])]
    y = b.add("Resize", inputs, mode=mode, coordinate_transformation_mode=transform,
              nearest_mode=_choice(rng, ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]))
    return b.model(b.add("Tanh", [y]))


def gen_upsample(rng) -> onnx.ModelProto:
    """Upsample (opset 9), nearest or linear, as the VNN-COMP cGAN exports it."""
    b = OnnxBuilder([1, 2, 2, 3], rng=rng, opset=9)
    scales = b.const(np.array([1, 1, _choice(rng, [2.0, 3.0]), _choice(rng, [2.0, 1.0])], dtype=np.float32))
    y = b.add("Upsample", [b.add("Relu", [b.input]), scales], mode=_choice(rng, ["nearest", "linear"]))
    return b.model(_conv(b, y, 2, 2, (3, 3), rng, pads=[1, 1, 1, 1]))


# --- step functions -----------------------------------------------------------------------------

def gen_step(rng) -> onnx.ModelProto:
    """Sign, Floor, Ceil or a Cast to int and back, between dense layers (scaled up, so that
    the steps fall inside the boxes)."""
    n = int(rng.integers(2, 5))
    b = OnnxBuilder([1, n], rng=rng)
    y = _dense(b, b.input, n, 4, rng)
    y = b.add("Mul", [y, b.const(np.float32(3.0))])
    kind = _choice(rng, ["Sign", "Floor", "Ceil", "Cast"])
    if kind == "Cast":
        y = b.add("Cast", [b.add("Cast", [y], to=TensorProto.INT64)], to=TensorProto.FLOAT)
    else:
        y = b.add(kind, [y])
    return b.model(_dense(b, y, 4, 2, rng))


def gen_binarized(rng) -> onnx.ModelProto:
    """A binarized layer as larq exports it: sign(sign(x) + 0.1), then a dense layer."""
    n = int(rng.integers(2, 5))
    b = OnnxBuilder([1, n], rng=rng)
    y = _dense(b, b.input, n, 5, rng)
    y = b.add("Sign", [b.add("Add", [b.add("Sign", [y]), b.const(np.float32(0.1))])])
    return b.model(_dense(b, y, 5, 2, rng))


# --- no relaxation ------------------------------------------------------------------------------

def gen_argmax_equal(rng) -> onnx.ModelProto:
    """A class index (ArgMax) compared with a label input and cast, times a score (a YOLO head)."""
    b = OnnxBuilder([1, 4], rng=rng)
    logits = _dense(b, b.input, 4, 3, rng)
    index = b.add("Cast", [b.add("ArgMax", [logits], axis=1, keepdims=0)], to=TensorProto.FLOAT)
    label = b.add("Gather", [b.input, b.const(np.int64(3))], axis=1)
    relation = _choice(rng, ["Equal", "Less", "Greater", "GreaterOrEqual", "LessOrEqual"])
    hit = b.add("Cast", [b.add(relation, [index, label])], to=TensorProto.FLOAT)
    score = b.add("Sigmoid", [_dense(b, b.input, 4, 1, rng)])
    return b.model(b.add("Mul", [score, b.add("Unsqueeze", [hit, b.ints([1])])]))


def gen_where_variable(rng) -> onnx.ModelProto:
    b = OnnxBuilder([1, 3], rng=rng)
    condition = b.add("Greater", [b.input, b.const(np.float32(0.0))])
    other = b.add("Tanh", [b.input]) if rng.random() < 0.5 else b.weight(1, 3, fan_in=1)
    return b.model(b.add("Where", [condition, b.add("Relu", [b.input]), other]))


def gen_gather_variable(rng) -> onnx.ModelProto:
    """Gather with indices from the input: an integer position picks a column."""
    b = OnnxBuilder([1, 4], rng=rng)
    position = b.add("Cast", [b.add("Mul", [b.add("Sigmoid", [b.input]), b.const(np.float32(2.99))])],
                     to=TensorProto.INT64)  # (1, 4) in 0..2
    data = b.add("Relu", [_dense(b, b.input, 4, 3, rng)]) if rng.random() < 0.5 else b.weight(2, 3, fan_in=1)
    return b.model(b.add("Flatten", [b.add("Gather", [data, position], axis=1)], axis=1))


def gen_patch(rng) -> onnx.ModelProto:
    """A patch at an input-given position, as VNN-COMP's cctsdb_yolo builds it: the position
    cast to int64 starts a Slice of a constant mask, whose Shape feeds an Expand; Range and
    ScatterND write the patch into the mask, which multiplies the image."""
    b = OnnxBuilder([10], rng=rng, opset=11)
    image = b.add("Reshape", [b.add("Slice", [b.input, b.ints([0]), b.ints([8]), b.ints([0])]), b.ints([1, 2, 4])])
    position = b.add("Cast", [b.add("Gather", [b.input, b.const(np.int64(8))], axis=0)], to=TensorProto.INT64)
    end = b.add("Add", [position, b.const(np.int64(2))])
    starts, ends = b.add("Unsqueeze", [position], axes=[0]), b.add("Unsqueeze", [end], axes=[0])
    rows = b.add("Slice", [b.add("Range", [b.const(np.int64(0)), b.const(np.int64(4)), b.const(np.int64(1))]),
                           starts, ends, b.ints([0])])  # the patch's columns, clipped at the edge
    count = b.add("Shape", [rows])
    patch = b.add("Expand", [b.const(np.full((1,), 0.0, dtype=np.float32)), count])
    index = b.add("Unsqueeze", [rows], axes=[1])
    mask = b.add("ScatterND", [b.const(np.ones(4, dtype=np.float32)), index, patch])
    y = b.add("Mul", [image, mask])
    return b.model(_dense(b, b.add("Flatten", [y], axis=1), 8, 2, rng))


# --- combinations -------------------------------------------------------------------------------

def gen_generator_net(rng) -> onnx.ModelProto:
    """A small cGAN-like generator: dense, reshape, ConvTranspose, Upsample, conv."""
    b = OnnxBuilder([1, 3], rng=rng, opset=11)
    y = b.add("Reshape", [_relu_dense(b, b.input, 3, 8, rng), b.ints([1, 2, 2, 2])])
    y = b.add("Relu", [b.add("ConvTranspose", [y, b.weight(2, 2, 2, 2), b.weight(2, fan_in=1)], strides=[2, 2])])
    y = b.add("Resize", [y, b.const(np.zeros(0, dtype=np.float32)), b.const(np.array([1, 1, 2, 2], dtype=np.float32))],
              mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    y = b.add("Relu", [_conv(b, y, 2, 2, (3, 3), rng, strides=[2, 2], pads=[1, 1, 1, 1])])
    return b.model(_dense(b, b.add("Flatten", [y], axis=1), 2 * 4 * 4, 1, rng))


def gen_gather_net(rng) -> onnx.ModelProto:
    """Columns picked by Gather feed separate branches (nn4sys' pensieve)."""
    b = OnnxBuilder([1, 2, 5], rng=rng)
    first = b.add("Gather", [b.input, b.const(np.int64(-1))], axis=2)  # (1, 2)
    second = b.add("Gather", [b.input, b.ints([0, 2])], axis=2)  # (1, 2, 2)
    y = b.add("Concat", [_relu_dense(b, first, 2, 3, rng),
                         _relu_dense(b, b.add("Flatten", [second], axis=1), 4, 3, rng)], axis=1)
    return b.model(_dense(b, y, 6, 2, rng))


FAMILIES = {
    "gather": gen_gather,
    "expand": gen_expand,
    "expand_chain": gen_expand_chain,
    "where": gen_where,
    "scatter_nd": gen_scatter_nd,
    "conv_transpose": gen_conv_transpose,
    "resize": gen_resize,
    "upsample": gen_upsample,
    "step": gen_step,
    "binarized": gen_binarized,
    "argmax_equal": gen_argmax_equal,
    "where_variable": gen_where_variable,
    "gather_variable": gen_gather_variable,
    "patch": gen_patch,
    "generator_net": gen_generator_net,
    "gather_net": gen_gather_net,
}
EXACT = {"argmax_equal", "where_variable", "gather_variable", "patch"}
STEP = {"step", "binarized"}


def make(family: str, seed: int, directory) -> str:
    model = FAMILIES[family](np.random.default_rng(seed))
    onnx.checker.check_model(model)
    return save(model, Path(directory) / f"{family}_{seed}.onnx")
