"""Running the original ONNX model in onnxruntime: the reference semantics for sat."""
from __future__ import annotations

import numpy as np


class OnnxRunner:
    def __init__(self, path: str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_shape = [d if isinstance(d, int) and d > 0 else 1 for d in model_input.shape]
        self.input_dtype = np.float64 if model_input.type == "tensor(double)" else np.float32

    def run(self, x: np.ndarray) -> np.ndarray:
        """Output (flattened) for one flat input x."""
        feed = np.asarray(x, dtype=self.input_dtype).reshape(self.input_shape)
        return np.asarray(self.session.run(None, {self.input_name: feed})[0]).reshape(-1)
