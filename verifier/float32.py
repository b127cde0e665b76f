"""float32 arithmetic in two constants, without torch (the loader uses them)."""

# A float32 result r is computed as r (1 + delta), |delta| <= UNIT_ROUNDOFF.
UNIT_ROUNDOFF = 2.0 ** -24


def gamma(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u): a float32 sum of n products (any order, FMA or not)
    is off by at most gamma_n times the sum of their magnitudes."""
    return n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)


def dot_product_gamma(n: int) -> float:
    """The gamma of a float32 dot product of length n as onnxruntime computes one: the n
    products, the bias, Gemm's alpha, and one more rounding of the weights, which onnxruntime
    folds a following BatchNormalization or constant scale into (W' = fl(W s)); the constants
    of the folded op round on their own (see the affine rule's 'rounding' tensor)."""
    return gamma(n + 3)
