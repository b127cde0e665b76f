"""ONNX's protobuf messages without the onnx package's start-up: `import onnx` pulls in
ml_dtypes (half a second, more than most certificates take to check). The generated module
onnx_ml_pb2 is loaded from the installed package's file under its own name (its only imports
are protobuf's), and the checker reads tensors and attributes with the few rules below."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

_MODULE = "onnx.onnx_ml_pb2"

# TensorProto.DataType -> numpy (what the checker's models use)
FLOAT, UINT8, INT8, INT32, INT64, BOOL, FLOAT16, DOUBLE = 1, 2, 3, 6, 7, 9, 10, 11
_NUMPY = {FLOAT: np.float32, UINT8: np.uint8, INT8: np.int8, INT32: np.int32, INT64: np.int64,
          BOOL: np.bool_, FLOAT16: np.float16, DOUBLE: np.float64}
_EXTERNAL = 1  # TensorProto.DataLocation


def _messages():
    """The generated module: onnx's own where onnx is already imported, else loaded from its
    file and registered under its own name (a later `import onnx` then reuses it rather than
    registering the same protobuf descriptors twice)."""
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    package = importlib.util.find_spec("onnx")
    if package is None or not package.submodule_search_locations:
        raise ImportError("the onnx package is not installed")
    path = Path(next(iter(package.submodule_search_locations))) / "onnx_ml_pb2.py"
    spec = importlib.util.spec_from_file_location(_MODULE, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_MODULE]
        raise
    return module


def load_model(path: str):
    """The ModelProto of an ONNX file (protobuf's DecodeError on a bad one)."""
    model = _messages().ModelProto()
    model.ParseFromString(Path(path).read_bytes())
    return model


def to_array(tensor) -> np.ndarray:
    """A TensorProto's values, as onnx.numpy_helper.to_array gives them (inline data only)."""
    dtype = _NUMPY.get(tensor.data_type)
    if dtype is None:
        raise ValueError(f"tensor '{tensor.name}': data type {tensor.data_type} is not supported")
    if tensor.data_location == _EXTERNAL:
        raise ValueError(f"tensor '{tensor.name}': external data is not supported")
    shape = tuple(tensor.dims)
    if tensor.raw_data:
        return np.frombuffer(tensor.raw_data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)
    if tensor.data_type == FLOAT16:  # stored as their bits in int32_data
        return np.asarray(tensor.int32_data, dtype=np.uint16).view(np.float16).reshape(shape)
    field = {FLOAT: tensor.float_data, DOUBLE: tensor.double_data, INT64: tensor.int64_data}.get(
        tensor.data_type, tensor.int32_data)
    return np.asarray(field, dtype=dtype).reshape(shape)


def attribute_value(attribute):
    """An AttributeProto's value, as onnx.helper.get_attribute_value gives it."""
    readers = {1: lambda a: a.f, 2: lambda a: a.i, 3: lambda a: a.s, 4: lambda a: a.t, 5: lambda a: a.g,
               6: lambda a: list(a.floats), 7: lambda a: list(a.ints), 8: lambda a: list(a.strings),
               9: lambda a: list(a.tensors), 10: lambda a: list(a.graphs)}
    if attribute.type not in readers:
        raise ValueError(f"attribute '{attribute.name}': type {attribute.type} is not supported")
    return readers[attribute.type](attribute)
