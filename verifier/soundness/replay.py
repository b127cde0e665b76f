"""Running an ONNX model in onnxruntime: the reference semantics of the harness (inputs cast
to the model's declared input type, float32 here). Its own small copy, independent of
`verifier.attack.replay`."""
from __future__ import annotations

from functools import lru_cache

import numpy as np


class OnnxModel:
    def __init__(self, path: str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        declared = self.session.get_inputs()[0]
        self.input_name = declared.name
        self.input_shape = [d if isinstance(d, int) and d > 0 else 1 for d in declared.shape]
        self.input_dtype = np.float64 if declared.type == "tensor(double)" else np.float32

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape))

    def cast(self, x) -> np.ndarray:
        """x as the values the model really receives (flat)."""
        return np.asarray(x, dtype=np.float64).reshape(-1).astype(self.input_dtype)

    def run(self, x) -> np.ndarray:
        """Flat output for one flat input (cast to the declared input type first)."""
        feed = self.cast(x).reshape(self.input_shape)
        return np.asarray(self.session.run(None, {self.input_name: feed})[0], dtype=np.float64).reshape(-1)


@lru_cache(maxsize=8)
def onnx_model(path: str) -> OnnxModel:
    return OnnxModel(path)
