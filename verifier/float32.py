"""float32 arithmetic in two constants, without torch (the loader uses them)."""

# A float32 result r is computed as r (1 + delta), |delta| <= UNIT_ROUNDOFF.
UNIT_ROUNDOFF = 2.0 ** -24


def gamma(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u): a float32 sum of n products (any order, FMA or not)
    is off by at most gamma_n times the sum of their magnitudes."""
    return n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)
