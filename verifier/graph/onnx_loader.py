"""ONNX file -> Graph: constants folded, ops mapped onto the verifier's op table, shapes known."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from verifier.errors import UnsupportedModel, UserError
from verifier.graph import onnx_index_ops, onnx_ops, onnx_spatial_ops  # noqa: F401  (they register converters)
from verifier.graph.composite import expand
from verifier.graph.discrete import Regions, region_op_supported, source_dtype
from verifier.graph.ir import Graph, Node
from verifier.graph.shapes import output_shape
from verifier.graph.simplify import simplify

# Ops whose every output is computable at load time when their inputs are (Shape also folds on
# variables, whose shapes are known).
_ALWAYS_CONSTANT = {"Constant", "Shape", "ConstantOfShape", "Size"}


class Builder:
    """Holds the state of one conversion: constants, variable shapes, emitted nodes."""

    def __init__(self, path: str, input_name: str, input_shape: tuple[int, ...], opsets=(), ir_version=None):
        self.path = path
        # of the default ONNX domain: some ops changed meaning across opsets
        self.opset = next((o.version for o in opsets if o.domain in ("", "ai.onnx")), 13)
        self.input_name = input_name
        self.constants: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple[int, ...]] = {input_name: input_shape}
        self.aliases: dict[str, str] = {}
        self.nodes: list[Node] = []
        self._fresh = 0
        self.current = None  # the ONNX node being converted, for messages
        self.regions = Regions(opsets, ir_version)  # integer-valued variables and the index computations on them

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

    _check_supported(path, graph, set(initializers), model.opset_import)
    builder = Builder(path, model_input.name, input_shape, model.opset_import, model.ir_version)
    builder.constants.update(initializers)
    for onnx_node in graph.node:
        builder.current = onnx_node
        _convert_node(builder, onnx_node)

    builder.regions.materialize(builder, [graph.output[0].name])
    output = builder.resolve(graph.output[0].name)
    if output in builder.constants:
        raise UserError(f"{path}: the output '{graph.output[0].name}' does not depend on the input")
    expanded = expand(builder.nodes)
    return Graph(model_input.name, input_shape, output, simplify(expanded, output),
                 "float64" if elem == onnx.TensorProto.DOUBLE else "float32", path,
                 execution_nodes=None if expanded is builder.nodes else builder.nodes)


def _check_supported(path: str, graph, constant_names: set[str], opsets) -> None:
    """Name every op that is neither foldable nor convertible, in one message. An op computed
    from integer-valued variables alone (verifier/graph/discrete.py) needs the ONNX reference
    evaluator to implement it."""
    constant, discrete = set(constant_names), set()
    unsupported = []
    for node in graph.node:
        variables = [i for i in node.input if i and i not in constant]
        if not variables or node.op_type in _ALWAYS_CONSTANT and not discrete.intersection(variables):
            constant.update(node.output)
        elif all(i in discrete for i in variables):
            discrete.update(node.output)
            if not region_op_supported(node, opsets):
                unsupported.append(f"{node.op_type} (node '{node.name or node.output[0]}')")
        elif node.op_type not in onnx_ops.CONVERTERS:
            unsupported.append(f"{node.op_type} (node '{node.name or node.output[0]}')")
        elif source_dtype(node) is not None:
            discrete.update(node.output)
    if unsupported:
        raise UnsupportedModel(f"{path}: unsupported ONNX op(s): {', '.join(unsupported)}")


def _convert_node(builder: Builder, node) -> None:
    inputs = [i for i in node.input if i]
    if builder.regions.absorbs(builder, node):
        builder.regions.absorb(node)
        return
    builder.regions.materialize(builder, inputs)
    if node.op_type == "Shape" and not builder.is_const(inputs[0]):
        shape = builder.shape(inputs[0])
        builder.constants[node.output[0]] = _slice_shape(node, np.array(shape, dtype=np.int64))
        return
    if node.op_type == "Size" and not builder.is_const(inputs[0]):
        builder.constants[node.output[0]] = np.array(np.prod(builder.shape(inputs[0])), dtype=np.int64)
        return
    if all(builder.is_const(i) for i in inputs):
        _fold(builder, node)
        return
    onnx_ops.CONVERTERS[node.op_type](builder, node)


def _slice_shape(node, shape: np.ndarray) -> np.ndarray:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return shape[attrs.get("start", 0): attrs.get("end", len(shape))]


def _fold(builder: Builder, node) -> None:
    from onnx.reference import ReferenceEvaluator  # heavy import, only when something folds

    feeds = {name: np.asarray(builder.const(name)) for name in node.input if name}
    try:
        outputs = ReferenceEvaluator(_one_node_model(node, feeds, builder.regions.opsets)).run(None, feeds)
    except Exception as e:  # the reference evaluator raises many types
        builder.fail(f"could not fold this constant op ({type(e).__name__}: {e})")
    for name, value in zip(node.output, outputs):
        builder.constants[name] = np.asarray(value)


def _one_node_model(node, feeds: dict, opsets):
    """The node alone, as a model of the original's opsets (an op's semantics change with the
    opset: Unsqueeze's axes moved from an attribute to an input in opset 13)."""
    helper = onnx.helper
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
              for name, value in feeds.items()]
    outputs = [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None) for name in node.output if name]
    return helper.make_model(helper.make_graph([node], "fold", inputs, outputs), opset_imports=list(opsets) or None)
