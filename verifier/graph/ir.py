"""The verifier's graph IR: a few verifier ops in topological order, shapes known.

Every tensor carries a leading batch dimension that is not part of the model: a node with
per-sample shape S holds tensors of shape (B, *S). S is the ONNX shape with symbolic
dimensions set to 1, so a model exported with batch size 1 still evaluates a batch of inputs.

The loader keeps constants as numpy arrays (float64, or int64 for index tables) and never
imports torch; `Graph.to(dtype, device)` gives the torch copy the engine runs on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass
class Node:
    name: str  # name of the tensor this node produces
    op: str  # key into verifier.ops.RULES
    inputs: list[str]  # names of the variable tensors it reads
    shape: tuple[int, ...]  # per-sample output shape
    tensors: dict = field(default_factory=dict)  # constant operands: numpy arrays or torch tensors
    attrs: dict = field(default_factory=dict)  # non-tensor attributes
    onnx_name: str = ""  # the ONNX node it came from, for messages

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def multiply_adds(self) -> int:
        """Rough cost of evaluating this node on one sample (one per element outside products)."""
        if self.op == "matmul":
            return self.size * self.tensors["W"].shape[0]
        if self.op == "conv":
            return self.size * math.prod(self.tensors["W"].shape[1:])
        if self.op == "conv_transpose":  # each output element gathers from 1/stride of the kernel
            W, a = self.tensors["W"], self.attrs
            return self.size * W.shape[0] // a["groups"] * math.prod(W.shape[2:]) // math.prod(a["stride"])
        return self.size


@dataclass
class Graph:
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    nodes: list[Node]  # topological order; excludes the input
    onnx_input_dtype: str = "float32"
    path: str = ""  # the ONNX file it was loaded from
    # The nodes as onnxruntime computes them, before composite ops were expanded
    # (graph/composite.py); None: the same as `nodes`. The forward float32 error analysis reads
    # them (verifier.float_error.output_error).
    execution_nodes: list[Node] | None = None
    _cast_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.by_name = {n.name: n for n in self.nodes}

    @property
    def input_size(self) -> int:
        return math.prod(self.input_shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shape_of(self.output_name)

    @property
    def output_size(self) -> int:
        return math.prod(self.output_shape)

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self.input_shape if name == self.input_name else self.by_name[name].shape

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {self.input_name: []}
        for node in self.nodes:
            users.setdefault(node.name, [])
            for name in node.inputs:
                users[name].append(node)
        return users

    def to(self, dtype: torch.dtype, device: torch.device | str = "cpu") -> "Graph":
        """A copy whose constant tensors are torch tensors on `device`, floating ones in `dtype`
        (cached)."""
        key = (dtype, str(device))
        if key not in self._cast_cache:
            def cast(nodes):
                return [Node(n.name, n.op, n.inputs, n.shape, {k: _cast(v, dtype, device) for k, v in n.tensors.items()},
                             n.attrs, n.onnx_name)
                        for n in nodes]

            execution = None if self.execution_nodes is None else cast(self.execution_nodes)
            self._cast_cache[key] = Graph(self.input_name, self.input_shape, self.output_name,
                                          cast(self.nodes), self.onnx_input_dtype, self.path, execution)
        return self._cast_cache[key]

    def execution(self) -> "Graph":
        """The graph as onnxruntime executes it (see execution_nodes)."""
        if self.execution_nodes is None:
            return self
        return Graph(self.input_name, self.input_shape, self.output_name, self.execution_nodes,
                     self.onnx_input_dtype, self.path)

    def multiply_adds(self) -> int:
        """Rough cost of evaluating one sample."""
        return sum(n.multiply_adds for n in self.nodes)

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of a cast graph's constants."""
        import torch

        for n in self.nodes:
            for v in n.tensors.values():
                if v.is_floating_point():
                    return v.dtype
        return torch.float32

    @property
    def device(self) -> torch.device:
        """The device of a cast graph's constants."""
        import torch

        for n in self.nodes:
            for v in n.tensors.values():
                return v.device
        return torch.device("cpu")


def _cast(value, dtype, device):
    import torch

    if isinstance(value, np.ndarray):
        value = np.require(value, requirements=["C", "W"])  # torch shares only writable arrays
    value = torch.as_tensor(value, device=device)
    return value.to(dtype) if value.is_floating_point() else value
