"""What a verification query returns."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VERDICTS = ("sat", "unsat", "unknown", "timeout", "error")


@dataclass
class Witness:
    """A counterexample confirmed by onnxruntime: flat input x (float32) and its output y."""

    x: np.ndarray
    y: np.ndarray

    def vnncomp_lines(self) -> list[str]:
        pairs = [f"(X_{i} {_exact(v)})" for i, v in enumerate(self.x)]
        pairs += [f"(Y_{j} {_exact(v)})" for j, v in enumerate(self.y)]
        pairs[0] = "(" + pairs[0]
        pairs[-1] = pairs[-1] + ")"
        return [pairs[0]] + [" " + p for p in pairs[1:]]


def _exact(v) -> str:
    return repr(float(np.float32(v)))


@dataclass
class Result:
    verdict: str
    witness: Witness | None = None
    time: float = 0.0
    stage: str = ""  # which stage decided, or why it is open

    def result_file_text(self) -> str:
        lines = [self.verdict]
        if self.verdict == "sat" and self.witness is not None:
            lines += self.witness.vnncomp_lines()
        return "\n".join(lines) + "\n"
