"""How far the float32 network that onnxruntime runs can be from the exact one, written again
for the checker (the rule of verifier/float_error.py, not imported from it).

Forward error analysis on the unmerged chain, with magnitudes from valid bounds of the exact
network over the region: the input is rounded to float32 (e = |x| u32); a dot product of
length k with a bias adds gamma32_{k+2} (|W| m + |b|) and passes input errors through |W|; an
elementwise scale and shift adds 4 u32 (|s| m + |t|); ReLU passes errors unchanged. m is the
float32 input's magnitude, |exact| + e. A spec row C_i then needs margin 2 |C_i| e (the factor
2 covers onnxruntime's fusions, as in the verifier).
"""
from __future__ import annotations

import numpy as np

from verifier.certcheck.network import Network
from verifier.certcheck.rounding import FLOAT32_UNIT, gamma32

SAFETY = 2.0
_SLACK = 1.0 + 1e-6  # covers the float64 rounding of this analysis itself


def output_error(net: Network, magnitude_of) -> np.ndarray:
    """Per output, a bound on |float32 output - exact output| over the region. magnitude_of(i):
    a bound on |exact value| at the input of execution primitive i (and of the output for i =
    len(net.execution))."""
    error = magnitude_of(0) * FLOAT32_UNIT
    for i, prim in enumerate(net.execution):
        if prim.kind == "relu":
            continue
        m = magnitude_of(i) + error
        size = prim.lin(m[None], "abs")[0]
        if prim.bias is not None:
            size = size + np.abs(prim.bias)
        error = prim.lin(error[None], "abs")[0] + gamma32(prim.float32_rounds) * size
        error = error * _SLACK
    return error


def row_margins(C: np.ndarray, error: np.ndarray) -> np.ndarray:
    """eps_i = 2 |C_i| e, rounded up."""
    return SAFETY * (np.abs(C) @ error) * _SLACK
