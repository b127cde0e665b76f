"""How far the float32 network that onnxruntime runs can be from the exact one: the rule of
verifier/float_error.py, written again for the checker (not imported from it).

Each op's float32 result is off from the exact op on the same (float32) inputs by at most
gamma (|A| |x| + c), by forward error analysis (Higham, Thm 3.5): a dot product of length k
with a bias, gamma_{k+1} (|W| |x| + |b|) in any summation order; we take gamma_{k+3} (Gemm's
alpha, and one more rounding of weights into which onnxruntime folds a following constant
scale); an elementwise scale and shift, 4 u32 (|s| |x| + |t|); ReLU is exact. A matmul that the
reading merged from a chain keeps the chain's terms: the first product's error passes through
|W2| and the second adds its own. Bounds are proved for every network whose every op result
is off by at most that bound, with |x| from valid bounds of the op's inputs: the exact network
and the float32 one are two of them. Inputs are float32 values of the box, exact.
"""
from __future__ import annotations

from verifier.certcheck.rounding import FLOAT32_UNIT, gamma32



def dot_product_gamma(k: int) -> float:
    """The gamma of a float32 dot product of length k with a bias (see above)."""
    return gamma32(k + 3)


def shifted_gamma(g: float) -> float:
    """A matmul's gamma once a shift is added to its float32 result: u |h + t| <=
    u ((1 + g)(|W| |x| + |b|) + |t|)."""
    return (g + FLOAT32_UNIT * (1 + g)) * (1 + 1e-12)


def merged_gamma(g1: float, g2: float) -> float:
    """Two matmuls in a chain: g1 |W2| (...) + g2 (1 + g1) |W2| (...) + g2 |b2|."""
    return (g1 + g2 + g1 * g2) * (1 + 1e-12)
