"""Affine ops: matrix products, convolutions, elementwise scale and shift, sums of tensors."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from verifier.ops.base import UNIT_ROUNDOFF, LinearRule, bias_of, gamma, lam_to_input_shape


class MatMul(LinearRule):
    """x @ W + b over the last axis; W (k, n), b broadcast to the output or absent."""

    def forward(self, node, x):
        y = x @ node.tensors["W"]
        return y + node.tensors["b"] if "b" in node.tensors else y

    def linear_part(self, node, x):
        return x @ node.tensors["W"]

    def forward_abs(self, node, r):
        return r @ node.tensors["W"].abs()

    def backward(self, node, lam, state, alpha=None):
        bias = bias_of(lam, node.tensors["b"]) if "b" in node.tensors else None
        W = node.tensors["W"]
        # one 2-D product: as a batched 3-D one it is 1.5x slower on CPU
        return [(lam.reshape(-1, W.shape[1]) @ W.T).reshape(*lam.shape[:-1], W.shape[0])], bias

    def float_error(self, node, errors, magnitudes):
        """Dot products of length k plus a bias: gamma_{k+2} (|W||x| + |b|) (one rounding more
        for Gemm's alpha), plus the input error through |W|. A matmul the loader merged from a
        chain carries the chain's terms (see graph.simplify.rounding_terms)."""
        (e,), (m,) = errors, magnitudes
        t = node.tensors
        W_abs = t["W_abs"] if "W_abs" in t else t["W"].abs()
        bias = t["b_abs"] if "b_abs" in t else (t["b"].abs() if "b" in t else 0.0)
        g = node.attrs.get("gamma", gamma(t["W"].shape[0] + 2))
        return e @ W_abs + g * (m @ W_abs + bias)


_CONV = {1: F.conv1d, 2: F.conv2d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d}


class Conv(LinearRule):
    """Conv1d/Conv2d with symmetric padding; leading dims of the tensor are folded into the batch."""

    def _apply(self, node, x, weight, bias):
        nd = node.attrs["spatial_dims"]
        lead = x.shape[: x.dim() - nd - 1]
        y = _CONV[nd](x.reshape(-1, *x.shape[-nd - 1:]), weight, bias, node.attrs["stride"],
                      node.attrs["padding"], node.attrs["dilation"], node.attrs["groups"])
        return y.reshape(*lead, *y.shape[1:])

    def forward(self, node, x):
        return self._apply(node, x, node.tensors["W"], node.tensors.get("b"))

    def linear_part(self, node, x):
        return self._apply(node, x, node.tensors["W"], None)

    def forward_abs(self, node, r):
        return self._apply(node, r, node.tensors["W"].abs(), None)

    def backward(self, node, lam, state, alpha=None):
        nd = node.attrs["spatial_dims"]
        in_shape = state.shape_of(node.inputs[0])
        out_spatial, in_spatial = node.shape[-nd:], in_shape[-nd:]
        W = node.tensors["W"]
        s, p, d = node.attrs["stride"], node.attrs["padding"], node.attrs["dilation"]
        out_pad = [in_spatial[i] - ((out_spatial[i] - 1) * s[i] - 2 * p[i] + d[i] * (W.shape[2 + i] - 1) + 1)
                   for i in range(nd)]
        flat = lam.reshape(-1, *node.shape[-nd - 1:])
        lam_in = _CONV_T[nd](flat, W, None, s, p, out_pad, node.attrs["groups"], d)
        lam_in = lam_in.reshape(*lam.shape[:2], *in_shape)
        bias = None
        if "b" in node.tensors:
            b = node.tensors["b"].reshape(-1, *([1] * nd))
            bias = bias_of(lam, b)
        return [lam_in], bias

    def float_error(self, node, errors, magnitudes):
        """A convolution is a dot product per output (im2col): as MatMul, with k the size of a
        window across the input channels of a group."""
        (e,), (m,) = errors, magnitudes
        nd = node.attrs["spatial_dims"]
        bias = node.tensors["b"].abs().reshape(-1, *([1] * nd)) if "b" in node.tensors else 0.0
        k = node.tensors["W"][0].numel()
        return self.forward_abs(node, e) + gamma(k + 2) * (self.forward_abs(node, m) + bias)


class Affine(LinearRule):
    """x * scale + shift with constant tensors broadcast against x (Mul, Div, Add, Sub, BN)."""

    def forward(self, node, x):
        t = node.tensors
        y = x * t["scale"] if "scale" in t else x
        return y + t["shift"] if "shift" in t else y

    def linear_part(self, node, x):
        t = node.tensors
        y = x * t["scale"] if "scale" in t else x
        # a shift that broadcasts x up (a larger constant) sets the output shape, as in forward
        # (numpy's broadcast_shapes: torch's imports sympy, half a second of start-up)
        return y.expand(np.broadcast_shapes(y.shape, t["shift"].shape)) if "shift" in t else y

    def forward_abs(self, node, r):
        return r * node.tensors["scale"].abs() if "scale" in node.tensors else r

    def backward(self, node, lam, state, alpha=None):
        t = node.tensors
        bias = bias_of(lam, t["shift"]) if "shift" in t else None
        scaled = lam * t["scale"] if "scale" in t else lam
        return [lam_to_input_shape(scaled, state.shape_of(node.inputs[0]))], bias

    def float_error(self, node, errors, magnitudes):
        """A product and a sum, each rounded, with room for the few more roundings of the ONNX
        form it came from (BatchNormalization: (x - mean) / sqrt(var + eps) * gamma + beta, whose
        intermediate constants the loader keeps as tensors['rounding']). The shift is
        broadcast like the output."""
        (e,), (m,) = errors, magnitudes
        t = node.tensors
        size = self.forward_abs(node, m)
        if "shift" in t:
            size = size + t["shift"].abs()
        if "rounding" in t:
            size = size + t["rounding"]
        return self.forward_abs(node, e) + 4 * UNIT_ROUNDOFF * size


class Add(LinearRule):
    """x + sign * y for two variable tensors (sign is +1 for Add, -1 for Sub)."""

    def forward(self, node, x, y):
        return x + y if node.attrs["sign"] > 0 else x - y

    def ibp(self, node, bx, by):
        (lx, ux), (ly, uy) = bx, by
        if node.attrs["sign"] > 0:
            return lx + ly, ux + uy
        return lx - uy, ux - ly

    def forward_linear(self, node, fns, state):
        (xa_lo, xb_lo, xa_up, xb_up), (ya_lo, yb_lo, ya_up, yb_up) = fns
        if node.attrs["sign"] > 0:
            return xa_lo + ya_lo, xb_lo + yb_lo, xa_up + ya_up, xb_up + yb_up
        return xa_lo - ya_up, xb_lo - yb_up, xa_up - ya_lo, xb_up - yb_lo

    def backward(self, node, lam, state, alpha=None):
        x, y = node.inputs
        lam_y = lam if node.attrs["sign"] > 0 else -lam
        return [lam_to_input_shape(lam, state.shape_of(x)),
                lam_to_input_shape(lam_y, state.shape_of(y))], None

    def float_error(self, node, errors, magnitudes):
        (ex, ey), (mx, my) = errors, magnitudes
        return ex + ey + UNIT_ROUNDOFF * (mx + my)
