"""Verification of networks holding an op with no useful relaxation (issue 17, part a): attacks
only, sat confirmed by onnxruntime, otherwise unknown naming the op, never a traceback; the grid
attack finds a counterexample at one integer position, where gradients say nothing."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import index_factory as factory
import verifier
from onnx_factory import run_onnxruntime
from test_verify import replay
from verifier.decide import violates
from verifier.spec.vnnlib import parse_vnnlib

ROOT = Path(__file__).resolve().parents[1]


def _spec(path: Path, lo, hi, output_rows: str, n_out: int) -> str:
    lines = [f"(declare-const X_{i} Real)\n(assert (>= X_{i} {float(a)!r}))\n(assert (<= X_{i} {float(b)!r}))\n"
             for i, (a, b) in enumerate(zip(lo, hi))]
    lines += [f"(declare-const Y_{j} Real)\n" for j in range(n_out)]
    path.write_text("".join(lines) + output_rows)
    return str(path)


def test_sat_is_found_and_replays_on_an_argmax_head(tmp_path):
    model = factory.make("argmax_equal", 0, tmp_path)
    lo, hi = -np.ones(4), np.ones(4)
    hi[3] = lo[3] = 1.0  # the label: class 1
    outputs = run_onnxruntime(model, (lo + (hi - lo) * np.random.default_rng(0).random((200, 4)))
                              .astype(np.float32).reshape(200, 1, 4)).reshape(-1)
    threshold = float(np.quantile(outputs, 0.3))  # 30% of the box violates
    spec = _spec(tmp_path / "sat.vnnlib", lo, hi, f"(assert (<= Y_0 {threshold!r}))\n", 1)
    result = verifier.verify(model, spec, timeout=60)
    assert result.verdict == "sat" and result.stage == "attack"
    region = parse_vnnlib(spec)[0]
    assert violates(region, replay(model, result.witness.x))


def test_no_counterexample_means_unknown_naming_the_op(tmp_path):
    model = factory.make("argmax_equal", 1, tmp_path)
    spec = _spec(tmp_path / "unsat.vnnlib", -np.ones(4), np.ones(4), "(assert (>= Y_0 2.0))\n", 1)
    result = verifier.verify(model, spec, timeout=60)
    assert result.verdict == "unknown", result
    assert "no relaxation for ArgMax (node 'ArgMax_" in result.stage, result.stage
    assert result.time < 55


def test_the_grid_finds_the_one_violating_position(tmp_path):
    """The patch network's output depends on the position input only through a cast to int64:
    over positions 0..3 every cell of width 1 gives another output. The threshold admits only
    the smallest, which PGD (no gradient) and a few random points would likely miss."""
    model = factory.make("patch", 3, tmp_path)
    base = np.random.default_rng(1).normal(size=10)
    positions = np.arange(0, 4)
    x = np.repeat(base[None], len(positions), 0)
    x[:, 8] = positions + 0.5
    y = run_onnxruntime(model, x.astype(np.float32)).reshape(len(x), -1)[:, 0]
    order = np.argsort(y)
    assert y[order[1]] > y[order[0]] + 1e-4, "the generated model has no single best position"
    threshold = float(y[order[0]] + y[order[1]]) / 2
    lo, hi = base.copy(), base.copy()
    lo[8], hi[8] = 0.0, 3.99
    spec = _spec(tmp_path / "patch.vnnlib", lo, hi, f"(assert (<= Y_0 {threshold!r}))\n", 2)
    result = verifier.verify(model, spec, timeout=60)
    assert result.verdict == "sat", result
    assert int(result.witness.x[8]) == positions[order[0]]


def test_cli_prints_one_line_naming_the_op(tmp_path):
    model = factory.make("where_variable", 0, tmp_path)
    spec = _spec(tmp_path / "where.vnnlib", -np.ones(3), np.ones(3), "(assert (>= Y_0 5.0))\n", 3)
    run = subprocess.run([sys.executable, str(ROOT / "cli.py"), "verify", model, spec, "--timeout", "30"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "unknown"
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no relaxation for Greater (node 'Greater_" in lines[0], run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("family", sorted(factory.EXACT))
def test_bounds_work_on_every_exact_family(family, tmp_path):
    """`cli.py bounds` (the API) gives finite, sound bounds even where verification only attacks."""
    model = factory.make(family, 0, tmp_path)
    graph = verifier.api.load_model(model)
    rng = np.random.default_rng(0)
    lo = rng.normal(size=graph.input_size) - 0.5
    hi = lo + 1.0
    for method in ("ibp", "crown"):
        lower, upper = verifier.bounds(model, (lo, hi), method=method)
        assert np.isfinite(lower).all() and np.isfinite(upper).all()
        x = (lo + (hi - lo) * rng.random((500, lo.size))).astype(np.float32)
        y = run_onnxruntime(model, x.reshape(500, *graph.input_shape)).reshape(500, -1)
        assert (y >= lower - 1e-5).all() and (y <= upper + 1e-5).all(), method
