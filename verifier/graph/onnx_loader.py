"""ONNX file -> Graph: constants folded, ops mapped onto the verifier's op table, shapes known."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from verifier.errors import UnsupportedModel, UserError
from verifier.graph import onnx_ops
from verifier.graph.ir import Graph, Node
from verifier.graph.shapes import output_shape
from verifier.graph.simplify import simplify

# Ops whose every output is computable at load time when their inputs are (Shape also folds on
# variables, whose shapes are known).
_ALWAYS_CONSTANT = {"Constant", "Shape", "ConstantOfShape", "Size"}


class Builder:
    """Holds the state of one conversion: constants, variable shapes, emitted nodes."""

    def __init__(self, path: str, input_name: str, input_shape: tuple[int, ...]):
        self.path = path
        self.input_name = input_name
        self.constants: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple[int, ...]] = {input_name: input_shape}
        self.aliases: dict[str, str] = {}
        self.nodes: list[Node] = []
        self._fresh = 0
        self.current = None  # the ONNX node being converted, for messages

    def resolve(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def is_const(self, name: str) -> bool:
        return self.resolve(name) in self.constants

    def const(self, name: str) -> np.ndarray:
        return self.constants[self.resolve(name)]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[self.resolve(name)]

    def fail(self, what: str):
        node = self.current
        raise UserError(f"{self.path}: node '{node.name or node.output[0]}' ({node.op_type}): {what}")

    def emit(self, op: str, inputs: list[str], out: str | None = None, tensors=None, attrs=None) -> str:
        """Append a verifier node, its shape inferred from its inputs' shapes."""
        if out is None:
            self._fresh += 1
            out = f"{self.current.output[0]}::{op}{self._fresh}"
        inputs = [self.resolve(i) for i in inputs]
        tensors = {k: _stored(np.asarray(v)) for k, v in (tensors or {}).items()}
        node = Node(out, op, inputs, (), tensors, attrs or {}, self.current.name)
        try:
            node.shape = output_shape(node, [self.shapes[i] for i in inputs])
        except (ValueError, IndexError) as e:
            self.fail(f"shape mismatch: {str(e).splitlines()[0]}")
        self.shapes[out] = node.shape
        self.nodes.append(node)
        return out


def _stored(array: np.ndarray) -> np.ndarray:
    """Constants are kept in float64 (integers as int64), contiguous."""
    dtype = np.float64 if np.issubdtype(array.dtype, np.floating) else np.int64
    return np.ascontiguousarray(array, dtype=dtype)


def load_onnx(path: str | Path) -> Graph:
    path = str(path)
    if not Path(path).is_file():
        raise UserError(f"{path}: file not found")
    try:
        model = onnx.load(path)
    except Exception as e:  # onnx raises several unrelated types for a corrupt file
        raise UserError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    graph = model.graph
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UserError(f"{path}: the model must have exactly one input, it has {len(inputs)}")
    if len(graph.output) != 1:
        raise UserError(f"{path}: the model must have exactly one output, it has {len(graph.output)}")
    model_input = inputs[0]
    input_shape = tuple(d.dim_value if d.dim_value > 0 else 1
                        for d in model_input.type.tensor_type.shape.dim)
    elem = model_input.type.tensor_type.elem_type
    if elem not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
        raise UserError(f"{path}: input '{model_input.name}' has type "
                        f"{onnx.TensorProto.DataType.Name(elem)}; only float inputs are supported")

    _check_supported(path, graph, set(initializers))
    builder = Builder(path, model_input.name, input_shape)
    builder.constants.update(initializers)
    for onnx_node in graph.node:
        builder.current = onnx_node
        _convert_node(builder, onnx_node)

    output = builder.resolve(graph.output[0].name)
    if output in builder.constants:
        raise UserError(f"{path}: the output '{graph.output[0].name}' does not depend on the input")
    nodes = simplify(builder.nodes, output)
    return Graph(model_input.name, input_shape, output, nodes,
                 "float64" if elem == onnx.TensorProto.DOUBLE else "float32", path)


def _check_supported(path: str, graph, constant_names: set[str]) -> None:
    """Name every op that is neither foldable nor convertible, in one message."""
    constant = set(constant_names)
    unsupported = []
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type in _ALWAYS_CONSTANT or all(i in constant for i in inputs):
            constant.update(node.output)
        elif node.op_type not in onnx_ops.CONVERTERS:
            unsupported.append(f"{node.op_type} (node '{node.name or node.output[0]}')")
    if unsupported:
        raise UnsupportedModel(f"{path}: unsupported ONNX op(s): {', '.join(unsupported)}")


def _convert_node(builder: Builder, node) -> None:
    inputs = [i for i in node.input if i]
    if node.op_type == "Shape" and not builder.is_const(inputs[0]):
        shape = builder.shape(inputs[0])
        builder.constants[node.output[0]] = _slice_shape(node, np.array(shape, dtype=np.int64))
        return
    if node.op_type == "Size" and not builder.is_const(inputs[0]):
        builder.constants[node.output[0]] = np.array(np.prod(builder.shape(inputs[0])), dtype=np.int64)
        return
    if node.op_type in _ALWAYS_CONSTANT or all(builder.is_const(i) for i in inputs):
        _fold(builder, node)
        return
    onnx_ops.CONVERTERS[node.op_type](builder, node)


def _slice_shape(node, shape: np.ndarray) -> np.ndarray:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return shape[attrs.get("start", 0): attrs.get("end", len(shape))]


def _fold(builder: Builder, node) -> None:
    from onnx.reference import ReferenceEvaluator  # heavy import, only when something folds

    feeds = {name: builder.const(name) for name in node.input if name}
    try:
        outputs = ReferenceEvaluator(node).run(None, feeds)
    except Exception as e:  # the reference evaluator raises many types
        builder.fail(f"could not fold this constant op ({type(e).__name__}: {e})")
    for name, value in zip(node.output, outputs):
        builder.constants[name] = np.asarray(value)
