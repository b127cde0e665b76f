"""What one run means, given the instance's truth and the verifier's result file.

    UNSOUND      unsat where the truth is sat (every planted instance is sat)
    BAD-WITNESS  sat whose witness is missing or malformed, lies outside the box (tolerance
                 0, as parsed and as the float32 the network receives), or whose output,
                 recomputed in onnxruntime from X, is not in the unsafe set (tolerance 0)
    CONFLICT     sat with a valid witness where the truth is unsat: the control's proof is
                 wrong (a harness bug, never the verifier's)
    MISSED       unknown, timeout or error on a sat instance; anything but unsat on an
                 unsat instance (other than the cases above)
    CORRECT      sat with a valid witness where the truth is sat; unsat where it is unsat
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifier.soundness.replay import OnnxModel
from verifier.soundness.results import ResultFile
from verifier.soundness.vnnlib_io import Spec

UNSOUND, BAD_WITNESS, CONFLICT, MISSED, CORRECT = "UNSOUND", "BAD-WITNESS", "CONFLICT", "MISSED", "CORRECT"
CLASSES = (UNSOUND, BAD_WITNESS, CONFLICT, MISSED, CORRECT)
FAILING = (UNSOUND, BAD_WITNESS, CONFLICT)  # any of these makes the check exit 1


@dataclass
class Verdict:
    status: str
    note: str = ""


def check_witness(result: ResultFile, spec: Spec, model: OnnxModel) -> str:
    """'' when the sat claim holds up, else what is wrong with it."""
    if result.x is None:
        return result.problem or "no witness"
    if result.x.size != spec.lo.size:
        return f"witness has {result.x.size} inputs, the spec {spec.lo.size}"
    if not spec.inside(result.x):
        return f"witness outside the box (worst by {_outside(result.x, spec):.3g})"
    fed = model.cast(result.x).astype(np.float64)
    if not spec.inside(fed):
        return f"witness leaves the box when cast to the model's input type (by {_outside(fed, spec):.3g})"
    y = model.run(result.x)
    if not spec.unsafe(y):
        return f"onnxruntime output {np.array2string(y, precision=9)} does not violate the property"
    return ""


def _outside(x: np.ndarray, spec: Spec) -> float:
    return float(max(np.max(spec.lo - x), np.max(x - spec.hi)))


def classify(expected: str, result: ResultFile, spec: Spec, model: OnnxModel) -> Verdict:
    if result.verdict == "unsat":
        return Verdict(UNSOUND, "unsat on a sat instance") if expected == "sat" else Verdict(CORRECT)
    if result.verdict == "sat":
        problem = check_witness(result, spec, model)
        if problem:
            return Verdict(BAD_WITNESS, problem)
        if expected == "unsat":
            return Verdict(CONFLICT, "valid witness on an instance proved unsat: the control's proof is wrong")
        return Verdict(CORRECT)
    readable = result.verdict == result.raw_verdict.lower()
    note = result.verdict if readable else f"error (first line {result.raw_verdict!r})"
    return Verdict(MISSED, f"{note}: {result.comment}" if result.comment else note)
