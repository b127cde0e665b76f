"""`cli.py bench --ray`: each instance one Ray task running the same worker as the local pool.

One local Ray (2 CPUs) serves the module. Tiny generated instances (a 2-input ReLU net, boxes whose
verdict is known by construction) run on Ray and on the local pool; a fake verifier kills its Ray
task's worker process mid-instance."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import onnx_factory as factory
from test_bench import fake_command, make_suite, run_bench  # noqa: F401  (fake_command: a fixture)

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def tiny_suite(folder: Path) -> Path:
    """Six instances on one 2-input ReLU net: Y_0 >= c over [-1, 1]^2, sat for c at most the value
    at a grid point, unsat for c above |W2| (|W1| 1 + |b1|) + |b2|, a bound on |Y_0| over the box."""
    rng = np.random.default_rng(7)
    W1, b1, W2, b2 = rng.normal(size=(2, 8)), rng.normal(size=8), rng.normal(size=(8, 1)), rng.normal(size=1)
    b = factory.OnnxBuilder([1, 2], rng=rng)
    hidden = b.add("Relu", [b.add("Gemm", [b.input, b.const(W1), b.const(b1)])])
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = factory.save(b.model(b.add("Gemm", [hidden, b.const(W2), b.const(b2)])), folder / "net.onnx")
    grid = np.array([[x, y] for x in (-1, 0, 1) for y in (-1, 0, 1)], dtype=np.float32)
    values = np.sort(factory.run_onnxruntime(onnx_path, grid).flatten())
    bound = float((np.abs(W2).T @ (np.abs(W1).T @ np.ones(2) + np.abs(b1)) + np.abs(b2))[0])
    cases = [(values[-1] - 0.01, "sat"), (values[4] - 0.01, "sat"), (values[0] - 0.01, "sat"),
             (bound + 0.01, "unsat"), (bound + 1, "unsat"), (2 * bound + 1, "unsat")]
    rows = []
    for k, (threshold, expected) in enumerate(cases):
        spec = folder / f"prop_{k}.vnnlib"
        spec.write_text(_vnnlib(threshold))
        rows.append(["tiny", "net.onnx", spec.name, "30", expected])
    with open(folder / "instances.csv", "w", newline="") as f:
        csv.writer(f).writerows([["benchmark", "onnx", "vnnlib", "timeout", "expected"], *rows])
    return folder / "instances.csv"


def _vnnlib(threshold: float) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(2)] + ["(declare-const Y_0 Real)"]
    lines += [f"(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))" for i in range(2)]
    lines.append(f"(assert (>= Y_0 {threshold:.9g}))")
    return "\n".join(lines) + "\n"


def test_six_rows_on_ray_give_the_local_pools_verdicts(tmp_path, local_ray):
    csv_path = tiny_suite(tmp_path / "suite")
    expected = [row["expected"] for row in csv.DictReader(open(csv_path))]
    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    local, _, _ = run_bench(csv_path, tmp_path / "local", None, jobs=2)
    on_ray, text, out = run_bench(csv_path, tmp_path / "ray", None, ray=local_ray)
    assert [o.verdict for o in local] == expected
    assert [o.verdict for o in on_ray] == expected
    assert "Ray tasks at" in text
    with open(out, newline="") as f:
        assert sorted(r["vnnlib"] for r in csv.DictReader(f)) == [f"prop_{k}.vnnlib" for k in range(6)]


def test_a_ray_task_killed_mid_instance_errs_its_own_row_only(tmp_path, local_ray, fake_command):
    """The fake verifier of row 2 SIGKILLs the Ray worker process running its task."""
    rows = [["onnx/n.onnx", "sat_1.vnnlib", "30", "sat"], ["onnx/n.onnx", "killparent_2.vnnlib", "30", "sat"],
            ["onnx/n.onnx", "unsat_3.vnnlib", "30", "unsat"], ["onnx/n.onnx", "sat_4.vnnlib", "30", "sat"]]
    csv_path = make_suite(tmp_path / "suite", rows, ["onnx", "vnnlib", "timeout", "expected"])
    outcomes, _, _ = run_bench(csv_path, tmp_path, fake_command, ray=local_ray)
    assert [o.verdict for o in outcomes] == ["sat", "error", "unsat", "sat"]
    assert outcomes[1].note.startswith("Ray task failed")
    assert outcomes[0].note == outcomes[2].note == outcomes[3].note == ""


def test_memory_cap_on_ray(tmp_path, local_ray, fake_command):
    rows = [["onnx/n.onnx", "blowup_1.vnnlib", "30"], ["onnx/n.onnx", "unsat_2.vnnlib", "30"]]
    outcomes, _, _ = run_bench(make_suite(tmp_path / "suite", rows), tmp_path, fake_command, ray=local_ray,
                               memory_limit=0.2)
    assert [(o.verdict, o.note) for o in outcomes] == [("error", "out of memory"), ("unsat", "")]


@pytest.mark.slow
def test_cli_bench_on_an_existing_cluster(tmp_path, local_ray):
    """`cli.py bench --ray ADDRESS` joins the running cluster and streams its rows into --out."""
    csv_path = tiny_suite(tmp_path / "suite")
    out = tmp_path / "results.csv"
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "bench", str(csv_path), "--ray", local_ray,
                           "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(out, newline="") as f:
        records = list(csv.DictReader(f))
    assert len(records) == 6 and all(r["status"] == "correct" for r in records), records


def test_ray_rejects_jobs(tmp_path, fake_command):
    from verifier.errors import UserError

    csv_path = make_suite(tmp_path / "suite", [["onnx/n.onnx", "sat_1.vnnlib", "10"]])
    with pytest.raises(UserError, match="--jobs"):
        run_bench(csv_path, tmp_path, fake_command, ray="", jobs=2)
