"""Tests of the soundness harness (`cli.py soundness generate|check`): the generator on a tiny
set, the checker's reading and classification of result files, its exit status, and our
verifier on a few shipped planted instances."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from verifier.cli import main
from verifier.soundness import check as check_module
from verifier.soundness import files
from verifier.soundness.attacks import AttackConfig
from verifier.soundness.check import SUBPROCESS, check
from verifier.soundness.classify import BAD_WITNESS, CONFLICT, CORRECT, MISSED, UNSOUND, classify
from verifier.soundness.generate import MIN_VIOLATION, GenerateConfig, generate
from verifier.soundness.replay import OnnxModel
from verifier.soundness.results import parse_result
from verifier.soundness.training import TrainConfig
from verifier.soundness.vnnlib_io import read_spec

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "bench_instances" / "soundness"


def shipped_rows(kind: str | None = None) -> list[files.Row]:
    rows = files.read_instances(SHIPPED / "instances.csv")
    return [r for r in rows if kind is None or r.kind == kind]


# ---------------------------------------------------------------- generator

TINY = dict(count=1, seed=3, arch="mlp", act="relu", plants_per_net=2,
            train=TrainConfig(epochs=60), attack=AttackConfig(restarts=32, samples=2000, schedules=((0.125, 40),)))


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    """The same tiny set generated twice."""
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    reports = [generate(folder, GenerateConfig(**TINY), log=lambda line: None) for folder in (first, second)]
    return first, second, reports[0]


def test_generator_writes_the_set(tiny_sets):
    out, _, report = tiny_sets
    with open(out / "instances.csv", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == list(files.COLUMNS)
    rows = files.read_instances(out / "instances.csv")
    assert len(rows) == len(report.rows) >= 2
    assert {r.kind for r in rows} == {files.PLANTED, files.CONTROL}
    for row in rows:
        assert (out / row.onnx).is_file() and (out / row.vnnlib).is_file()
        planted = row.kind == files.PLANTED
        assert (row.expected, bool(row.witness)) == (("sat", True) if planted else ("unsat", False))


def test_generated_witnesses_hold_in_onnxruntime(tiny_sets):
    out, _, _ = tiny_sets
    for row in files.read_instances(out / "instances.csv"):
        if row.kind != files.PLANTED:
            continue
        spec, witness = read_spec(out / row.vnnlib), np.load(out / row.witness)
        assert witness.dtype == np.float32 and spec.inside(witness)
        assert spec.violation(OnnxModel(str(out / row.onnx)).run(witness)) >= MIN_VIOLATION


def test_generator_is_reproducible(tiny_sets):
    first, second, _ = tiny_sets
    names = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


# ---------------------------------------------------------------- result files

@pytest.mark.parametrize("text, verdict", [
    ("unsat\n", "unsat"), ("  sat  \n", "sat"), ("UNSAT", "unsat"), ("unknown\n", "unknown"),
    ("timeout", "timeout"), ("holds\n", "unsat"), ("violated\n", "sat"),
    ("unsatisfiable\n", "error"), ("satisfied\n", "error"), ("", "error"), ("sat unsat\n", "error"),
])
def test_verdict_is_the_exact_first_token(text, verdict):
    assert parse_result(text).verdict == verdict


def test_witness_parsing():
    result = parse_result("sat\n((X_0 0.5)\n (X_1 -1.25e-3)\n (Y_0 1.0)\n (Y_1 2.0))\n")
    assert result.verdict == "sat" and result.x.tolist() == [0.5, -1.25e-3]
    assert parse_result("sat\n((X_1 0.5) (X_0 0.5) (Y_0 1))").x is None
    assert parse_result("sat\n").x is None


# ---------------------------------------------------------------- classification

def witness_text(x, y=(0.0, 0.0)) -> str:
    pairs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(x)] + [f"(Y_{j} {float(v)!r})" for j, v in enumerate(y)]
    return "sat\n(" + "\n ".join(pairs) + ")\n"


@pytest.fixture(scope="module")
def planted():
    """(spec, model, witness) of a shipped corner plant (its witness lies on the box's faces)."""
    row = next(r for r in shipped_rows(files.PLANTED) if "corner" in r.vnnlib)
    return read_spec(SHIPPED / row.vnnlib), OnnxModel(str(SHIPPED / row.onnx)), np.load(SHIPPED / row.witness)


def test_unsat_on_a_planted_instance_is_unsound(planted):
    spec, model, _ = planted
    assert classify("sat", parse_result("unsat\n"), spec, model).status == UNSOUND


def test_the_planted_witness_is_correct(planted):
    spec, model, witness = planted
    assert classify("sat", parse_result(witness_text(witness)), spec, model).status == CORRECT


def test_witness_one_ulp_outside_the_box_is_bad(planted):
    spec, model, witness = planted
    i = int(np.argmax(witness.astype(np.float64) == spec.hi))  # a coordinate on the upper face
    assert witness[i] == spec.hi[i]
    outside = witness.copy()
    outside[i] = np.nextafter(np.float32(spec.hi[i]), np.float32(np.inf))
    verdict = classify("sat", parse_result(witness_text(outside)), spec, model)
    assert verdict.status == BAD_WITNESS and "outside" in verdict.note


def test_witness_whose_replay_does_not_violate_is_bad(planted):
    spec, model, _ = planted
    centre = ((spec.lo + spec.hi) / 2).astype(np.float32)
    claimed = (-1.0, 1.0) if spec.unsafe(np.array([-1.0, 1.0])) else (1.0, -1.0)  # the file's Y is not trusted
    verdict = classify("sat", parse_result(witness_text(centre, claimed)), spec, model)
    assert verdict.status == BAD_WITNESS and "does not violate" in verdict.note


def test_sat_without_witness_is_bad(planted):
    spec, model, _ = planted
    assert classify("sat", parse_result("sat\n"), spec, model).status == BAD_WITNESS


@pytest.mark.parametrize("text", ["unknown\n", "timeout\n", "error\n", "unsatisfiable\n", ""])
def test_no_answer_on_a_planted_instance_is_missed(planted, text):
    spec, model, _ = planted
    assert classify("sat", parse_result(text), spec, model).status == MISSED


def test_controls(planted):
    spec, model, witness = planted
    assert classify("unsat", parse_result("unsat\n"), spec, model).status == CORRECT
    assert classify("unsat", parse_result("unknown\n"), spec, model).status == MISSED
    assert classify("unsat", parse_result(witness_text(witness)), spec, model).status == CONFLICT


# ---------------------------------------------------------------- the check command

FAKE_VERIFIER = """
import sys, time
verdict, result = sys.argv[1], sys.argv[2]
if verdict == "hang":
    time.sleep(1000)
open(result, "w").write(verdict + "\\n")
"""


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake_verifier.py"
    script.write_text(FAKE_VERIFIER)
    return lambda verdict: f"{sys.executable} {script} {verdict} {{result}}"


def test_check_exits_1_on_unsound(fake, tmp_path, capsys):
    name = Path(shipped_rows(files.PLANTED)[0].vnnlib).name
    out = tmp_path / "results.csv"
    assert main(["soundness", "check", str(SHIPPED), "--command", fake("unsat"), "--filter", name,
                 "--out", str(out)]) == 1
    assert UNSOUND in capsys.readouterr().out
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["verdict"], r["status"]) for r in rows] == [("unsat", UNSOUND)]


def test_check_exits_0_when_nothing_is_wrong(fake, tmp_path):
    name = Path(shipped_rows(files.PLANTED)[0].vnnlib).name
    assert main(["soundness", "check", str(SHIPPED), "--command", fake("unknown"), "--filter", name,
                 "--out", str(tmp_path / "r.csv")]) == 0


def test_check_kills_a_hanging_verifier(fake, monkeypatch):
    monkeypatch.setattr(check_module, "KILL_GRACE", 0.5)
    row = shipped_rows(files.PLANTED)[0]
    report = check(SHIPPED, command=fake("hang"), timeout=0.5, name_filter=Path(row.vnnlib).name,
                   log=lambda line: None)
    (run,) = report.runs
    assert (run.result.verdict, run.verdict.status) == ("timeout", MISSED) and run.seconds < 5


def test_our_verifier_on_a_few_shipped_instances():
    """A fresh process per instance, as `cli.py soundness check` runs it."""
    rows = [r for r in shipped_rows() if r.arch == "mlp"][:3]
    names = {r.vnnlib for r in rows}
    report = check(SHIPPED, timeout=10, runner=SUBPROCESS, select=lambda r: r.vnnlib in names, log=lambda s: None)
    assert len(report.runs) == len(rows)
    assert report.count(UNSOUND) == report.count(BAD_WITNESS) == report.count(CONFLICT) == 0


# ---------------------------------------------------------------- the exact control proof

@pytest.mark.parametrize("seed", range(4))
def test_milp_proof_agrees_with_a_dense_grid(seed):
    """On a 2-input ReLU network, the MILP's proof and its maximum agree with a fine grid: a
    proof only where the grid's worst margin is below -PROOF_MARGIN, else a maximum at least
    the grid's."""
    import torch

    from verifier.soundness.exact import PROOF_MARGIN, prove_robust
    from verifier.soundness.models import build_model

    torch.manual_seed(seed)
    model = build_model("mlp", "relu", (2,), hidden=8).eval()
    lo, hi = np.array([-0.3, -0.2], dtype=np.float32), np.array([0.1, 0.4], dtype=np.float32)
    axes = [np.linspace(lo[i], hi[i], 301) for i in range(2)]
    grid = np.stack(np.meshgrid(*axes), -1).reshape(-1, 2)
    with torch.no_grad():
        y = model(torch.as_tensor(grid, dtype=torch.float32)).double().numpy()
    for label in (0, 1):
        worst = float(np.max(y[:, 1 - label] - y[:, label]))
        proof = prove_robust(model, (2,), lo, hi, label)
        if proof.proved:
            assert worst < -PROOF_MARGIN
        else:
            assert proof.status == "a point reaches the margin", proof
            assert -PROOF_MARGIN <= proof.reached and worst <= proof.reached + 1e-4 * (1 + abs(proof.reached))
