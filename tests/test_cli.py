"""The command line as a user meets it: verdict lines, result files, one-line errors, timeouts."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import ROOT, shipped_instances
from test_verify import replay
from verifier.decide import violates
from verifier.spec.vnnlib import parse_vnnlib

ROWS = shipped_instances()
UNSAT = next(r for r in ROWS if r["expected"] == "unsat" and "mlp" in r["onnx"])
SAT = next(r for r in ROWS if r["expected"] == "sat" and "mlp" in r["onnx"])
HARD = next(r for r in ROWS if r["expected"] == "" and "tanh" in r["onnx"])


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def assert_user_error(proc, *fragments):
    assert proc.returncode == 2
    assert proc.stdout.splitlines()[0] == "error"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unsat_verdict_is_the_first_line():
    proc = cli("verify", UNSAT["onnx"], UNSAT["vnnlib"], "--timeout", 60)
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == "unsat"


def test_sat_result_file_holds_a_witness_that_replays(tmp_path):
    out = tmp_path / "result.txt"
    proc = cli("verify", SAT["onnx"], SAT["vnnlib"], "--timeout", 60, "--out", out)
    assert proc.returncode == 0 and proc.stdout.strip() == "sat"
    text = out.read_text()
    assert text.splitlines()[0] == "sat"
    pairs = [p.strip(" ()\n").split() for p in text.split("\n", 1)[1].split(")") if p.strip(" ()\n")]
    x = np.array([float(v) for name, v in pairs if name.startswith("X_")])
    y = np.array([float(v) for name, v in pairs if name.startswith("Y_")])
    assert [name for name, _ in pairs] == [f"X_{i}" for i in range(len(x))] + [f"Y_{j}" for j in range(len(y))]
    region = parse_vnnlib(SAT["vnnlib"])[0]
    assert np.all(x >= region.lo) and np.all(x <= region.hi)
    y_ort = replay(SAT["onnx"], x)
    assert violates(region, y_ort)
    assert np.allclose(y, y_ort, rtol=1e-6, atol=1e-6)


def test_missing_model_is_a_one_line_error(tmp_path):
    assert_user_error(cli("verify", tmp_path / "nope.onnx", UNSAT["vnnlib"]), "nope.onnx", "not found")


def test_missing_spec_is_a_one_line_error(tmp_path):
    assert_user_error(cli("verify", UNSAT["onnx"], tmp_path / "nope.vnnlib"), "nope.vnnlib", "not found")


def test_malformed_spec_names_file_and_line(tmp_path):
    spec = tmp_path / "bad.vnnlib"
    spec.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 0.5)\n")
    assert_user_error(cli("verify", UNSAT["onnx"], spec), "bad.vnnlib:3")


def test_spec_of_the_wrong_size_is_a_user_error(tmp_path):
    spec = tmp_path / "small.vnnlib"
    spec.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                    "(assert (<= X_0 0.5))\n(assert (>= X_0 0.0))\n(assert (<= Y_0 0.0))\n")
    assert_user_error(cli("verify", UNSAT["onnx"], spec), "small.vnnlib", "64")


def test_unsupported_ops_are_all_named(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Softmax", ["x"], ["s"], name="soft"),
             helper.make_node("Erf", ["s"], ["y"], name="erf1")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "softmax.onnx"
    onnx.save(model, path)
    spec = tmp_path / "p.vnnlib"
    spec.write_text("".join(f"(declare-const X_{i} Real)\n" for i in range(4)) +
                    "".join(f"(declare-const Y_{i} Real)\n" for i in range(4)) +
                    "".join(f"(assert (<= X_{i} 1))\n(assert (>= X_{i} 0))\n" for i in range(4)) +
                    "(assert (<= Y_0 Y_1))\n")
    assert_user_error(cli("verify", path, spec), "Softmax", "soft", "Erf", "erf1")


def test_timeout_is_honoured():
    started = time.monotonic()
    proc = cli("verify", HARD["onnx"], HARD["vnnlib"], "--timeout", 3)
    elapsed = time.monotonic() - started
    assert proc.stdout.splitlines()[0] in ("timeout", "unsat", "sat")
    assert elapsed < 3 + 2


def test_bounds_json_contains_sampled_outputs():
    proc = cli("bounds", SAT["onnx"], SAT["vnnlib"], "--method", "crown", "--json")
    assert proc.returncode == 0
    boxes = [json.loads(line) for line in proc.stdout.splitlines()]
    region = parse_vnnlib(SAT["vnnlib"])[0]
    assert len(boxes) == 1 and len(boxes[0]["lower"]) == 10
    rng = np.random.default_rng(1)
    for _ in range(50):
        y = replay(SAT["onnx"], region.lo + (region.hi - region.lo) * rng.random(region.n_inputs))
        assert np.all(y >= np.array(boxes[0]["lower"]) - 1e-5)
        assert np.all(y <= np.array(boxes[0]["upper"]) + 1e-5)


def test_vnncomp_run_instance_writes_the_result_file(tmp_path):
    out = tmp_path / "res.txt"
    script = ROOT / "vnncomp" / "run_instance.sh"
    proc = subprocess.run(["bash", str(script), "v1", "digits", UNSAT["onnx"], UNSAT["vnnlib"], str(out), "60"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().splitlines()[0] == "unsat"


def test_models_and_specs_load_without_torch():
    """Start-up: loading and parsing never import torch (~2 s), so they take a fraction of a
    second and a bad input is reported before the import."""
    pairs = sorted({(r["onnx"], r["vnnlib"]) for r in ROWS})
    script = ("import sys\nfrom verifier import api\n"
              f"for onnx, vnnlib in {pairs!r}:\n"
              "    api.load_spec(vnnlib, api.load_model(onnx))\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("method", ["auto", "smt"])
def test_native_output_never_comes_before_the_verdict(method):
    """Native code writes to file descriptor 1 directly (HiGHS through scipy's MILP prints a
    line of its own on some instances): a stage that does so still leaves the verdict on
    stdout's first line."""
    script = ("import os, sys\nimport verifier.pipeline as pipeline\nfrom verifier.cli import main\n"
              "original = pipeline._stages\n"
              "def noisy(query):\n"
              "    os.write(1, b'HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();\\n')\n"
              "    return original(query)\n"
              "pipeline._stages = noisy\n"
              f"sys.exit(main(['verify', {SAT['onnx']!r}, {SAT['vnnlib']!r}, '--timeout', '60', '--method', {method!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "sat"
    assert "HighsMipSolverData" not in proc.stdout and "HighsMipSolverData" in proc.stderr
