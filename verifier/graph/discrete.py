"""Integer-valued tensors computed from the input, and the index computations on them.

Some networks turn inputs into integers (a patch position cast to int64, an ArgMax class
index) and compute indices from them: slices with those starts, ranges, scatters. The shapes of
those intermediate tensors depend on the values, which the IR's static shapes cannot express.

The loader therefore tracks *discrete* tensors: variables whose values are integers (Cast to an
integer or bool type, ArgMax, comparisons: IR nodes of their own) and everything computed from
discrete variables and constants alone. An ONNX node whose variable inputs are all discrete is
not converted but *absorbed* into a region of the ONNX graph, with no shape of its own. When an
ordinary node reads a region tensor (or it is the output), the part of the region it depends
on becomes one `table` node (verifier/ops/table.py): a sub-model that onnxruntime runs once
per distinct value of its leaves (the discrete IR tensors it reads), whose
output must keep one shape. Converted nodes never see a data-dependent shape.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

INTEGER_TYPES = {TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8,
                 TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64, TensorProto.BOOL}
COMPARISONS = {"Equal": "equal", "Less": "less", "LessOrEqual": "less_equal", "Greater": "greater",
               "GreaterOrEqual": "greater_equal"}
# shape queries answered from the IR's static shapes when their input has one
_SHAPE_QUERIES = {"Shape", "Size"}


def source_dtype(node) -> np.dtype | None:
    """The numpy dtype of an op that makes integer values out of a float variable (a Cast to an
    integer or bool type, ArgMax/ArgMin, a comparison); None for any other op."""
    if node.op_type == "Cast":
        to = next(a.i for a in node.attribute if a.name == "to")
        return helper.tensor_dtype_to_np_dtype(to) if to in INTEGER_TYPES else None
    if node.op_type in ("ArgMax", "ArgMin"):
        return np.dtype(np.int64)
    if node.op_type in COMPARISONS:
        return np.dtype(np.bool_)
    return None


class Regions:
    """Per conversion: the discrete IR tensors and the absorbed ONNX nodes."""

    def __init__(self, opsets, ir_version: int | None = None):
        self.opsets = list(opsets)
        self.ir_version = ir_version  # the model's: what the onnxruntime it runs in accepts
        self.dtypes: dict[str, np.dtype] = {}  # discrete IR tensor -> the dtype ONNX gives it
        self.producers: dict[str, tuple[int, object]] = {}  # region tensor -> (order, ONNX node)
        self._count = 0

    def is_discrete(self, b, name: str) -> bool:
        return name in self.producers or b.resolve(name) in self.dtypes

    def absorbs(self, b, node) -> bool:
        """Are the node's variable inputs (at least one) all discrete? Shape queries on tensors
        with an IR shape are answered by the loader instead."""
        variables = [i for i in node.input if i and not b.is_const(i)]
        if not variables or not all(self.is_discrete(b, i) for i in variables):
            return False
        return not (node.op_type in _SHAPE_QUERIES and variables[0] not in self.producers)

    def absorb(self, node) -> None:
        self._count += 1
        for name in node.output:
            if name:
                self.producers[name] = (self._count, node)

    def mark(self, name: str, dtype) -> None:
        """An IR tensor whose values are integers of this dtype."""
        self.dtypes[name] = np.dtype(dtype)

    def materialize(self, b, names) -> None:
        """Turn every region tensor among `names` into a table node of the IR."""
        for name in names:
            if name in self.producers:
                self._table(b, name)

    def _table(self, b, name: str) -> None:
        nodes, leaves, constants = self._dependencies(b, name)
        inputs = [helper.make_tensor_value_info(leaf, helper.np_dtype_to_tensor_dtype(self.dtypes[b.resolve(leaf)]),
                                                b.shape(leaf)) for leaf in leaves]
        graph = helper.make_graph(nodes, "table", inputs, [helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None)],
                                  [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()])
        model = helper.make_model(graph, opset_imports=self.opsets)
        if self.ir_version:
            model.ir_version = min(model.ir_version, self.ir_version)
        attrs = {"leaf_shapes": [b.shape(leaf) for leaf in leaves],
                 "leaf_dtypes": [self.dtypes[b.resolve(leaf)] for leaf in leaves], "cache": {},
                 "integer": all(self.dtypes[b.resolve(leaf)].kind in "iub" for leaf in leaves)}
        sample = _sample(b, model, attrs)
        model.graph.output[0].type.tensor_type.elem_type = helper.np_dtype_to_tensor_dtype(sample.dtype)
        attrs.update(model=model.SerializeToString(), shape=sample.shape,
                     onnx_op=f"an index computation ({', '.join(sorted({n.op_type for n in nodes}))})")
        del self.producers[name]
        b.emit("table", leaves, name, attrs=attrs)
        self.mark(name, sample.dtype)

    def _dependencies(self, b, name: str):
        """The region nodes `name` depends on (in graph order), the leaves they read (discrete
        IR tensors, by their ONNX names) and the constants."""
        found: dict[int, object] = {}
        leaves: list[str] = []
        constants: dict[str, np.ndarray] = {}
        stack = [name]
        while stack:
            tensor = stack.pop()
            order, node = self.producers[tensor]
            if order in found:
                continue
            found[order] = node
            for i in node.input:
                if not i or i in constants or i in leaves:
                    continue
                if b.is_const(i):
                    constants[i] = b.const(i)
                elif i in self.producers:
                    stack.append(i)
                else:
                    leaves.append(i)
        return [found[k] for k in sorted(found)], leaves, constants


def _sample(b, model, attrs) -> np.ndarray:
    """The table's value at zero leaves: its shape and dtype."""
    from onnx.reference import ReferenceEvaluator

    feeds = {i.name: np.zeros(shape, dtype) for i, shape, dtype in
             zip(model.graph.input, attrs["leaf_shapes"], attrs["leaf_dtypes"])}
    try:
        return np.asarray(ReferenceEvaluator(model).run(None, feeds)[0])
    except Exception as e:  # the reference evaluator raises many types
        b.fail(f"could not evaluate the index computation this node reads ({type(e).__name__}: {e})")


def region_op_supported(node, opsets) -> bool:
    """Can the ONNX reference evaluator run this op inside a table?"""
    from onnx.reference.ops import load_op

    version = next((o.version for o in opsets if o.domain in ("", "ai.onnx") and node.domain in ("", "ai.onnx")), None)
    try:
        load_op(node.domain, node.op_type, version)
    except Exception:  # unknown op: NotImplementedError, or a schema error
        return False
    return True

