"""Reading a verifier's VNN-COMP result file: the verdict is the first line, stripped and
lower-cased, as an exact token ("unsat" is not "sat", "unsatisfiable" is neither); VNN-COMP
2021's "holds" and "violated" count as unsat and sat, so that no unsat claim slips through
as an unreadable answer. For sat the witness follows, `((X_0 v) ... (Y_0 v))`."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

VERDICTS = ("sat", "unsat", "unknown", "timeout", "error")
ALIASES = {"holds": "unsat", "violated": "sat"}
_PAIR = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")


@dataclass
class ResultFile:
    verdict: str  # one of VERDICTS, or "error" for anything else (empty, unknown word)
    raw_verdict: str  # the first line as written
    x: np.ndarray | None  # the witness input (float64, parsed from the text), None if absent or malformed
    problem: str = ""  # why the witness could not be read
    comment: str = ""  # the first `; ...` line after the verdict (an adapter's reason for an error)


def parse_result(text: str) -> ResultFile:
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    token = ALIASES.get(first.lower(), first.lower())
    verdict = token if token in VERDICTS else "error"
    comment = next((line.strip()[1:].strip() for line in lines[1:] if line.strip().startswith(";")), "")
    if verdict != "sat":
        return ResultFile(verdict, first, None, comment=comment)
    x, problem = parse_witness("\n".join(lines[1:]))
    return ResultFile(verdict, first, x, problem, comment)


def parse_witness(text: str) -> tuple[np.ndarray | None, str]:
    """The X values of a `((X_0 v) ... (Y_0 v))` witness, checked for consecutive names, X
    before Y; the file's Y values are read but never trusted."""
    pairs = _PAIR.findall(text)
    if not pairs:
        return None, "no witness"
    xs = [(int(i), v) for name, i, v in pairs if name == "X"]
    ys = [int(i) for name, i, _ in pairs if name == "Y"]
    if [i for i, _ in xs] != list(range(len(xs))) or ys != list(range(len(ys))):
        return None, "witness names are not X_0..X_n, Y_0..Y_m in order"
    if any(name == "X" for name, _, _ in pairs[len(xs):]):
        return None, "an X value follows a Y value"
    try:
        return np.array([float(v) for _, v in xs], dtype=np.float64), ""
    except ValueError as e:
        return None, f"unreadable witness value ({e})"
