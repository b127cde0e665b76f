"""Marabou (maraboupy) as a soundness-check verifier: `python marabou_run.py ONNX VNNLIB
TIMEOUT RESULT` writes a VNN-COMP result file. Marabou reads the model with its own ONNX
parser and the property with its own VNN-LIB parser (MarabouCore.loadProperty); a sat answer
carries Marabou's assignment to the input and output variables as the witness, unchanged.
Runs as a script (no import of this package), so that it judges Marabou alone."""
from __future__ import annotations

import math
import sys
from pathlib import Path

# Marabou's exit codes as VNN-COMP verdicts (anything else, e.g. ERROR, is an error)
VERDICTS = {"sat": "sat", "unsat": "unsat", "TIMEOUT": "timeout", "UNKNOWN": "unknown",
            "QUIT_REQUESTED": "timeout"}


def solve(onnx: str, vnnlib: str, timeout: float) -> str:
    from maraboupy import Marabou

    network = Marabou.read_onnx(onnx)
    options = Marabou.createOptions(verbosity=0, timeoutInSeconds=max(1, math.floor(timeout)), numWorkers=1)
    code, values, _ = network.solve(options=options, verbose=False, propertyFilename=vnnlib)
    verdict = VERDICTS.get(code, "error")
    if verdict != "sat":
        return f"{verdict}\n" if verdict != "error" else f"error\n; Marabou exit code {code!r}\n"
    xs = [values[int(v)] for array in network.inputVars for v in array.flatten()]
    ys = [values[int(v)] for array in network.outputVars for v in array.flatten()]
    pairs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(xs)] + [f"(Y_{j} {float(v)!r})" for j, v in enumerate(ys)]
    return "sat\n(" + "\n ".join(pairs) + ")\n"


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: marabou_run.py ONNX VNNLIB TIMEOUT RESULT", file=sys.stderr)
        return 2
    onnx, vnnlib, timeout, result = argv
    try:
        text = solve(onnx, vnnlib, float(timeout))
    except Exception as e:  # an unsupported op, a parse failure: Marabou's error, not a verdict
        text = f"error\n; {type(e).__name__}: {' '.join(str(e).split())}\n"
    Path(result).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
