"""A sound and complete neural-network verifier (ONNX models, VNN-LIB properties).

The public API is imported lazily so that `import verifier` stays cheap:
    verifier.verify(model_path, spec_path, timeout=...) -> Result
    verifier.bounds(model, box, method="crown") -> (lower, upper)
    verifier.load_model(path), verifier.load_spec(path, graph)
"""

import os

# OpenMP threads that wait for work sleep instead of spinning. Spinning threads fight every other
# process for the cores: on the shared 2-core machine (load 7-10) ACAS Xu 1_7 prop_2 took 28.9 s
# with torch's two spinning threads, 6.6 s with passive ones, 8.4 s on one thread; tllverifybench
# N=8_0 18.6-23 s against 4.8-5.0 s. libgomp reads this when torch loads, so it must be set before
# (a process that imported torch first keeps its own setting; so does a caller who set it).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_API = ("verify", "bounds", "load_model", "load_spec")


def __getattr__(name):
    if name in _API:
        from verifier import api

        return getattr(api, name)
    raise AttributeError(f"module 'verifier' has no attribute '{name}'")
