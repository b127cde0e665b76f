"""The soundness check's built-in verifiers (verifier/soundness/adapters.py): Marabou through
maraboupy (a test dependency, so this runs in CI) with its documented unsound answers on the
tanh plants, and any tool in the VNN-COMP script layout, witness read whole."""
from __future__ import annotations

import csv
import stat
from pathlib import Path

import numpy as np
import pytest

from verifier.cli import main
from verifier.errors import UserError
from verifier.soundness import adapters, files
from verifier.soundness.check import check
from verifier.soundness.classify import BAD_WITNESS, CORRECT, MISSED, UNSOUND, check_witness
from verifier.soundness.replay import OnnxModel
from verifier.soundness.results import parse_result
from verifier.soundness.vnnlib_io import read_spec

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "bench_instances" / "soundness"
TANH_PLANTS = ("n03_mlp_tanh_20_p0_interior", "n03_mlp_tanh_20_p1_corner")
RELU_PLANT = "n00_mlp_relu_20_p1_corner"
CNN_PLANT = "n01_cnn_tanh_3x5x5_p0_corner"  # AveragePool: not in maraboupy 2.0.0's ONNX parser


def quiet(line: str) -> None:
    pass


def stem(row: files.Row) -> str:
    return Path(row.vnnlib).stem


def planted_witness_violates(row: files.Row) -> bool:
    spec, model = read_spec(SHIPPED / row.vnnlib), OnnxModel(str(SHIPPED / row.onnx))
    witness = np.load(SHIPPED / row.witness)
    return spec.inside(witness) and spec.unsafe(model.run(witness))


@pytest.fixture(scope="module")
def marabou_runs():
    """Marabou through the adapter (a fresh process each, as `--verifier marabou` runs it)."""
    from importlib.metadata import version

    import maraboupy  # noqa: F401  a test dependency: a missing one is a failure, not a skip

    names = {*TANH_PLANTS, RELU_PLANT, CNN_PLANT}
    report = check(SHIPPED, command=adapters.resolve("marabou"), timeout=20,
                   select=lambda row: stem(row) in names, log=quiet)
    return {stem(run.row): run for run in report.runs}, version("maraboupy")


def test_marabou_on_the_tanh_plants_is_classified_exactly(marabou_runs):
    """UNSOUND exactly while Marabou answers unsat (the planted witness does violate in
    onnxruntime); should a later maraboupy fix it, sat must carry a valid witness (CORRECT) and
    anything else is MISSED. maraboupy 2.0.0 answers unsat on both (README, harness section)."""
    runs, version = marabou_runs
    for name in TANH_PLANTS:
        run = runs[name]
        assert planted_witness_violates(run.row)
        expected = {"unsat": UNSOUND, "sat": CORRECT}.get(run.result.verdict, MISSED)
        assert run.verdict.status == expected, (name, run.result, run.verdict)
        if version == "2.0.0":
            assert run.result.verdict == "unsat", (name, run.result)


def test_marabou_sat_answers_carry_its_witness(marabou_runs):
    """Marabou's assignment reaches the checker whole and inside the box; the checker replays it
    (maraboupy 2.0.0 stops on the boundary Y_0 = Y_1 in exact arithmetic, which the float32
    replay misses: BAD-WITNESS, never "no witness")."""
    runs, _ = marabou_runs
    run = runs[RELU_PLANT]
    assert run.result.verdict == "sat"
    spec = read_spec(SHIPPED / run.row.vnnlib)
    assert run.result.x is not None and run.result.x.shape == spec.lo.shape and spec.inside(run.result.x)
    problem = check_witness(run.result, spec, OnnxModel(str(SHIPPED / run.row.onnx)))
    assert (run.verdict.status, run.verdict.note) == ((BAD_WITNESS, problem) if problem else (CORRECT, ""))
    assert problem == "" or "does not violate" in problem


def test_marabou_errors_are_missed_with_the_reason(marabou_runs):
    runs, _ = marabou_runs
    run = runs[CNN_PLANT]
    assert run.verdict.status == MISSED
    if run.result.verdict == "error":
        assert "AveragePool" in run.verdict.note


# ---------------------------------------------------------------- VNN-COMP layout

FAKE_TOOL = {
    "prepare_instance.sh": """#!/usr/bin/env bash
echo "$@" >> "$(dirname "$0")/prepared.txt"
[ -e "$(dirname "$0")/fail_prepare" ] && exit 3
exit 0
""",
    # the VNN-COMP argument order: v1 CATEGORY ONNX VNNLIB RESULT TIMEOUT; answers with the
    # witness in witness.txt when there is one
    "run_instance.sh": """#!/usr/bin/env bash
here="$(dirname "$0")"
echo "$@" >> "$here/ran.txt"
if [ -e "$here/witness.txt" ]; then cp "$here/witness.txt" "$5"; else echo unknown > "$5"; fi
""",
}


@pytest.fixture
def fake_tool(tmp_path):
    folder = tmp_path / "tool"
    folder.mkdir()
    for name, text in FAKE_TOOL.items():
        (folder / name).write_text(text)
        (folder / name).chmod((folder / name).stat().st_mode | stat.S_IXUSR)
    return folder


def witness_file(x: np.ndarray) -> str:
    pairs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(x)] + ["(Y_0 0.0)", "(Y_1 0.0)"]
    return "sat\n(" + "\n ".join(pairs) + ")\n"


def planted_row() -> files.Row:
    return next(r for r in files.read_instances(SHIPPED / "instances.csv") if stem(r) == RELU_PLANT)


def test_vnncomp_tool_is_prepared_then_run_and_its_witness_read_whole(fake_tool, tmp_path):
    row = planted_row()
    (fake_tool / "witness.txt").write_text(witness_file(np.load(SHIPPED / row.witness)))
    out = tmp_path / "results.csv"
    assert main(["soundness", "check", str(SHIPPED), "--verifier", f"vnncomp:{fake_tool}",
                 "--filter", Path(row.vnnlib).name, "--timeout", "7", "--out", str(out)]) == 0
    onnx, vnnlib = (SHIPPED / row.onnx).resolve(), (SHIPPED / row.vnnlib).resolve()
    assert (fake_tool / "prepared.txt").read_text().split() == ["v1", adapters.BENCHMARK, str(onnx), str(vnnlib)]
    ran = (fake_tool / "ran.txt").read_text().split()
    assert ran[:4] == ["v1", adapters.BENCHMARK, str(onnx), str(vnnlib)] and ran[5] == "7"
    with open(out, newline="") as f:
        assert [(r["verdict"], r["status"]) for r in csv.DictReader(f)] == [("sat", CORRECT)]


def test_vnncomp_tool_whose_prepare_fails_is_not_run(fake_tool):
    (fake_tool / "fail_prepare").touch()
    row = planted_row()
    report = check(SHIPPED, command=adapters.resolve(f"vnncomp:{fake_tool}"), timeout=5,
                   name_filter=Path(row.vnnlib).name, log=quiet)
    (run,) = report.runs
    assert run.verdict.status == MISSED and "prepare_instance failed" in run.verdict.note
    assert not (fake_tool / "ran.txt").exists()


def test_vnncomp_folder_without_the_scripts_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="run_instance.sh not found"):
        (tmp_path / "prepare_instance.sh").touch()
        adapters.resolve(f"vnncomp:{tmp_path}")


def test_unknown_verifier_is_a_one_line_error(capsys):
    assert main(["soundness", "check", str(SHIPPED), "--verifier", "nnv"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --verifier nnv: unknown verifier") and "\n" not in err


def test_an_adapters_reason_for_an_error_is_kept():
    error = parse_result("error\n; NotImplementedError: Operation AveragePool not implemented\n")
    assert (error.verdict, error.comment) == ("error", "NotImplementedError: Operation AveragePool not implemented")
