"""Converters for ConvTranspose, Resize and Upsample.

Resize and Upsample with constant scales or sizes are fixed linear maps: every output element
reads one input element (nearest) or mixes 2 per resized axis (linear), with the indices and
weights onnxruntime computes, in float32 and in its order of operations, so that the IR picks
the same neighbours. They become one `take` node.
"""
from __future__ import annotations

import numpy as np

from verifier.graph.onnx_ops import _attrs, _conv_padding, _optional, conv_weights, converter


@converter("ConvTranspose")
def _conv_transpose(b, node):
    a = _attrs(node)
    x = node.input[0]
    W, nd = conv_weights(b, node)
    in_spatial = b.shape(x)[-nd:]
    stride = tuple(a.get("strides", [1] * nd))
    dilation = tuple(a.get("dilations", [1] * nd))
    extra = tuple(a.get("output_padding", [0] * nd))
    crop = _transposed_pads(b, a, in_spatial, W.shape[2:], stride, dilation, extra)
    tensors = {"W": W}
    bias = _optional(b, node, 2)
    if bias is not None:
        tensors["b"] = bias.astype(np.float64)
    b.emit("conv_transpose", [x], node.output[0], tensors=tensors,
           attrs={"spatial_dims": nd, "stride": stride, "dilation": dilation, "groups": a.get("group", 1),
                  "extra": extra, "crop": crop})


def _transposed_pads(b, a, in_spatial, kernel, stride, dilation, extra):
    """(begin, end) removed from each spatial axis of the full transposed convolution."""
    nd = len(kernel)
    full = [stride[i] * (in_spatial[i] - 1) + extra[i] + (kernel[i] - 1) * dilation[i] + 1 for i in range(nd)]
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if "output_shape" in a or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = list(a["output_shape"])[-nd:] if "output_shape" in a else [n * s for n, s in zip(in_spatial, stride)]
        total = [f - t for f, t in zip(full, target)]
        if min(total) < 0:
            b.fail(f"output_shape {target} is larger than the transposed convolution's {full}")
        upper = auto_pad == "SAME_UPPER"
        return tuple((t // 2, t - t // 2) if upper else (t - t // 2, t // 2) for t in total)
    if auto_pad == "VALID":
        return ((0, 0),) * nd
    return tuple(_conv_padding(b, None, a, in_spatial, kernel, stride, dilation))


# --- Resize and Upsample ------------------------------------------------------------------------

@converter("Resize")
def _resize(b, node):
    a = _attrs(node)
    x = node.input[0]
    shape = b.shape(x)
    opset10 = _default_opset(b) < 11  # Resize-10: (X, scales), asymmetric coordinates
    scales = _optional(b, node, 1 if opset10 else 2)
    sizes = None if opset10 else _optional(b, node, 3)
    if a.get("antialias", 0):
        b.fail("Resize with antialias is not supported")
    axes = [int(i) % len(shape) for i in a.get("axes", range(len(shape)))]
    sizes, scales = _resize_targets(b, shape, axes, scales, sizes, a)
    default_mode = "asymmetric" if opset10 else "half_pixel"
    mode = _text(a.get("mode", "nearest"))
    transform = _text(a.get("coordinate_transformation_mode", default_mode))
    nearest = _text(a.get("nearest_mode", "floor" if opset10 else "round_prefer_floor"))
    _resampled(b, x, shape, sizes, scales, mode, transform, nearest, node.output[0])


@converter("Upsample")
def _upsample(b, node):
    a = _attrs(node)
    x = node.input[0]
    shape = b.shape(x)
    scales = a.get("scales") if "scales" in a else _optional(b, node, 1)
    if scales is None:
        b.fail("Upsample needs constant scales")
    scales = np.asarray(scales, dtype=np.float32)
    sizes = [int(np.floor(n * s)) for n, s in zip(shape, scales)]
    mode = _text(a.get("mode", "nearest"))
    _resampled(b, x, shape, sizes, scales, "bilinear" if mode == "bilinear" else mode, "asymmetric", "floor",
               node.output[0])


def _default_opset(b) -> int:
    return max([o.version for o in b.regions.opsets if o.domain in ("", "ai.onnx")], default=11)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _resize_targets(b, shape, axes, scales, sizes, a):
    """Output sizes and float32 scales for every axis (1 on the axes not resized)."""
    full_scales = np.ones(len(shape), dtype=np.float32)
    full_sizes = list(shape)
    if sizes is not None and np.size(sizes):
        sizes = [int(s) for s in np.asarray(sizes).reshape(-1)]
        if _text(a.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
            b.fail("Resize with keep_aspect_ratio_policy other than stretch is not supported")
        for axis, size in zip(axes, sizes):
            full_sizes[axis] = size
            full_scales[axis] = np.float32(size) / np.float32(shape[axis])
    elif scales is not None and np.size(scales):
        for axis, scale in zip(axes, np.asarray(scales, dtype=np.float32).reshape(-1)):
            full_scales[axis] = scale
            full_sizes[axis] = int(np.floor(shape[axis] * np.float64(scale)))
    else:
        b.fail("Resize needs constant scales or sizes")
    if min(full_sizes) < 1:
        b.fail(f"Resize to an empty shape {full_sizes}")
    return full_sizes, full_scales


def _resampled(b, x, shape, sizes, scales, mode, transform, nearest, out):
    if mode not in ("nearest", "linear", "bilinear"):
        b.fail(f"Resize mode '{mode}' is not supported (nearest and linear only)")
    axes = []
    for axis, (n, m) in enumerate(zip(shape, sizes)):
        if n == m and scales[axis] == 1:
            axes.append((np.arange(n)[:, None], np.ones((n, 1), dtype=np.float32)))
            continue
        coordinate = _source_coordinate(b, transform, n, m, np.float32(scales[axis]))
        axes.append(_nearest_taps(coordinate, n, nearest) if mode == "nearest" else _linear_taps(coordinate, n))
    index, weight = _combined(axes, shape)
    tensors = {"index": index}
    if mode != "nearest":
        tensors["weight"] = weight.astype(np.float64)
    b.emit("take", [x], out, tensors=tensors, attrs={"shape": tuple(sizes)})


def _source_coordinate(b, transform, n, m, scale):
    """Where each output position of an axis reads, in float32, as onnxruntime computes it."""
    f = np.float32
    i = np.arange(m, dtype=f)
    if transform == "asymmetric":
        return i / scale
    if transform == "half_pixel":
        return (i + f(0.5)) / scale - f(0.5)
    if transform == "pytorch_half_pixel":
        return (i + f(0.5)) / scale - f(0.5) if m > 1 else np.zeros(m, f)
    if transform == "tf_half_pixel_for_nn":
        return (i + f(0.5)) / scale
    if transform == "align_corners":
        return i * f(n - 1) / f(m - 1) if m > 1 else np.zeros(m, f)
    b.fail(f"Resize coordinate_transformation_mode '{transform}' is not supported")


def _nearest_taps(x, n, rounding):
    if rounding == "floor":
        index = np.floor(x)
    elif rounding == "ceil":
        index = np.ceil(x)
    elif rounding == "round_prefer_ceil":
        index = np.where(x >= 0, np.floor(x + np.float32(0.5)), np.ceil(x - np.float32(0.5)))
    else:  # round_prefer_floor: halves go down
        index = np.where(x == np.floor(x) + np.float32(0.5), np.floor(x),
                         np.where(x >= 0, np.floor(x + np.float32(0.5)), np.ceil(x - np.float32(0.5))))
    index = np.clip(index, 0, n - 1).astype(np.int64)
    return index[:, None], np.ones((len(x), 1), dtype=np.float32)


def _linear_taps(x, n):
    """Two neighbours each, weighted by the distance to the other one (at the last element,
    both are that element, at 0.5 each), as onnxruntime's linear modes weigh them."""
    x = np.clip(x, np.float32(0), np.float32(n - 1))
    low = np.minimum(x.astype(np.int64), n - 1)
    high = np.minimum(low + 1, n - 1)
    w_low, w_high = np.abs(x - high.astype(np.float32)), np.abs(x - low.astype(np.float32))
    same = low == high
    w_low, w_high = np.where(same, np.float32(0.5), w_low), np.where(same, np.float32(0.5), w_high)
    return np.stack([low, high], 1), np.stack([w_low, w_high], 1).astype(np.float32)


def _combined(axes, shape):
    """Flat input indices (n_out, k) and float32 weights of the separable taps of every axis."""
    strides = np.cumprod([1, *shape[::-1]])[:-1][::-1]
    index = np.zeros((1, 1), dtype=np.int64)
    weight = np.ones((1, 1), dtype=np.float32)
    for (taps, weights), stride in zip(axes, strides):
        keep = (weights != 0).any(0)  # a tap that is zero everywhere (unscaled axes) is dropped
        taps, weights = taps[:, keep], weights[:, keep]
        index = (index[:, None, :, None] + stride * taps[None, :, None, :]).reshape(-1, index.shape[1] * taps.shape[1])
        weight = (weight[:, None, :, None] * weights[None, :, None, :]).reshape(index.shape)
    return index, weight
