"""The verifiers `cli.py soundness check` can run, each as command templates over
{onnx} {vnnlib} {timeout} {result}, run in a fresh process group (check.py):

    ours          this verifier: `cli.py verify ONNX VNNLIB --timeout T --out RESULT`
    marabou       maraboupy (marabou_run.py): its own ONNX reader and VNN-LIB parser, its
                  counterexample written as the witness
    vnncomp:PATH  any tool in the VNN-COMP script layout: PATH/prepare_instance.sh v1 BENCH
                  ONNX VNNLIB (untimed by the instance's budget, PREPARE_TIMEOUT at most),
                  then PATH/run_instance.sh v1 BENCH ONNX VNNLIB RESULT TIMEOUT
    --command     any other template

Every adapter leaves a VNN-COMP result file that results.py reads whole: the verdict on the
first line, and for sat the witness `((X_0 v) ... (Y_0 v))` after it.
"""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import verifier
from verifier.errors import UserError

CLI_PATH = Path(verifier.__file__).resolve().parents[1] / "cli.py"
_PYTHON = shlex.quote(sys.executable)
PREPARE_TIMEOUT = 300.0  # VNN-COMP gives prepare_instance.sh its own limit, outside the instance's
BENCHMARK = "soundness"  # the category argument the VNN-COMP scripts receive
NAMES = ("ours", "marabou", "vnncomp:PATH")


@dataclass(frozen=True)
class Adapter:
    name: str
    command: str  # template of the timed run
    prepare: str | None = None  # template run first, untimed by the instance's budget


OURS = Adapter("ours", f"{_PYTHON} {shlex.quote(str(CLI_PATH))} verify {{onnx}} {{vnnlib}} "
                       "--timeout {timeout} --out {result}")
# run by path: the script imports maraboupy and numpy only, not this package
MARABOU = Adapter("marabou", f"{_PYTHON} {shlex.quote(str(Path(__file__).with_name('marabou_run.py')))} "
                             "{onnx} {vnnlib} {timeout} {result}")


def from_command(command: str) -> Adapter:
    return Adapter("command", command)


def resolve(name: str) -> Adapter:
    """The adapter called `name` (one of NAMES); a UserError naming what is wrong otherwise."""
    if name == "ours":
        return OURS
    if name == "marabou":
        _require_maraboupy()
        return MARABOU
    if name.startswith("vnncomp:"):
        return vnncomp(name[len("vnncomp:"):])
    raise UserError(f"--verifier {name}: unknown verifier; use one of {', '.join(NAMES)}")


def vnncomp(folder: str) -> Adapter:
    """A tool in the VNN-COMP layout: PATH holds prepare_instance.sh and run_instance.sh."""
    root = Path(folder).expanduser().resolve()
    scripts = [root / "prepare_instance.sh", root / "run_instance.sh"]
    for script in scripts:
        if not script.is_file():
            raise UserError(f"--verifier vnncomp:{folder}: {script} not found")
    prepare, run = (f"bash {shlex.quote(str(s))} v1 {BENCHMARK} {{onnx}} {{vnnlib}}" for s in scripts)
    return Adapter(f"vnncomp:{root}", f"{run} {{result}} {{timeout}}", prepare)


def _require_maraboupy() -> None:
    import importlib.util

    if importlib.util.find_spec("maraboupy") is None:
        raise UserError("--verifier marabou: maraboupy is not installed (pip install maraboupy, "
                        "or the project's test extra)")
