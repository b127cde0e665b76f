"""A sound and complete neural-network verifier (ONNX models, VNN-LIB properties).

The public API is imported lazily so that `import verifier` stays cheap:
    verifier.verify(model_path, spec_path, timeout=...) -> Result
    verifier.bounds(model, box, method="crown") -> (lower, upper)
    verifier.load_model(path), verifier.load_spec(path, graph)
"""

_API = ("verify", "bounds", "load_model", "load_spec")


def __getattr__(name):
    if name in _API:
        from verifier import api

        return getattr(api, name)
    raise AttributeError(f"module 'verifier' has no attribute '{name}'")
