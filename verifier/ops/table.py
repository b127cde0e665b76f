"""Index computations on integer values of the input: a part of the ONNX graph that onnxruntime
evaluates once per distinct value of its integer inputs, looked up afterwards.

A patch attack exported from PyTorch (VNN-COMP's cctsdb_yolo) casts two inputs to integers
(the patch position), then slices, builds ranges and scatters with them: tensors whose shapes
depend on those values, which the static-shape IR cannot hold. The loader gathers such a part
into one `table` node (verifier/graph/discrete.py) whose inputs are the integer tensors it
reads (`leaves`) and whose output has a fixed shape. Its value is piecewise constant in the
network input, so it passes no gradient (a zero one).

attrs: model (the sub-model, serialized ONNX), leaf_dtypes (numpy dtypes the sub-model takes),
cache (key bytes -> value, shared by every cast copy of the graph), integer (all leaves take
integer values). Bounds: with integer leaves whose boxes hold at most _MAX_VALUES combinations,
the hull of the values at all of them; otherwise unbounded.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from verifier.errors import UserError
from verifier.ops.exact import Exact, connected

_MAX_VALUES = 4096


class Table(Exact):
    def forward(self, node, *leaves):
        keys = torch.cat([t.detach().reshape(t.shape[0], -1) for t in leaves], 1).cpu().double().numpy()
        distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
        values = np.stack([value_at(node, row) for row in distinct])
        out = torch.as_tensor(values, dtype=leaves[0].dtype, device=leaves[0].device)
        return connected(out[torch.as_tensor(inverse.reshape(-1), device=out.device)], *leaves)

    def ibp(self, node, *bounds):
        lowers, uppers = [], []
        for b in range(bounds[0][0].shape[0]):
            values = self._values_in_box(node, [(l[b], u[b]) for l, u in bounds])
            if values is None:
                lowers.append(np.full(node.shape, -np.inf))
                uppers.append(np.full(node.shape, np.inf))
            else:
                lowers.append(values.min(0))
                uppers.append(values.max(0))
        like = bounds[0][0]
        return (torch.as_tensor(np.stack(lowers), dtype=like.dtype, device=like.device),
                torch.as_tensor(np.stack(uppers), dtype=like.dtype, device=like.device))

    @staticmethod
    def _values_in_box(node, leaf_bounds):
        """The value at every integer point of the leaves' box, or None (too many, or not integer)."""
        if not node.attrs["integer"]:
            return None
        ranges = []
        for l, u in leaf_bounds:
            low = np.ceil(l.flatten().cpu().numpy())
            high = np.floor(u.flatten().cpu().numpy())
            ranges += [np.arange(a, b + 1) for a, b in zip(low, high)]
        count = math.prod(len(r) for r in ranges)
        if count == 0 or count > _MAX_VALUES:
            return None if count else np.zeros((1, *node.shape))  # an empty box: any value
        return np.stack([value_at(node, np.array(point, dtype=np.float64))
                         for point in itertools.product(*ranges)])


def value_at(node, row: np.ndarray) -> np.ndarray:
    """The sub-model's output (float64, node.shape) for the leaves' values concatenated in row."""
    cache = node.attrs["cache"]
    key = row.tobytes()
    if key not in cache:
        cache[key] = _evaluate(node, row)
    return cache[key]


def _evaluate(node, row: np.ndarray) -> np.ndarray:
    session = node.attrs.get("session")
    if session is None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        session = node.attrs["session"] = ort.InferenceSession(node.attrs["model"], options,
                                                               providers=["CPUExecutionProvider"])
    feeds, start = {}, 0
    for meta, shape, dtype in zip(session.get_inputs(), node.attrs["leaf_shapes"], node.attrs["leaf_dtypes"]):
        size = math.prod(shape)
        feeds[meta.name] = row[start:start + size].astype(dtype).reshape(shape)
        start += size
    value = np.asarray(session.run(None, feeds)[0], dtype=np.float64)
    if value.shape != tuple(node.shape):
        raise UserError(f"node '{node.onnx_name}': its output has shape {list(value.shape)} for "
                        f"some inputs and {list(node.shape)} for others (data-dependent shapes are "
                        "not supported)")
    return value
