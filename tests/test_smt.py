"""The SMT stage: exact encoding, verdicts, the CLI path, declines, and exact leaf closing."""
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

import verifier
from conftest import ROOT, shipped_instances
from onnx_factory import OnnxBuilder, _dense
from verifier.boundprop.engine import crown
from verifier.graph.evaluate import evaluate
from verifier.graph.onnx_loader import load_onnx
from verifier.smt import z3_solver
from verifier.smt.encode import encode
from verifier.smt.stage import float32_box, numpy_bounds, thresholds

z3 = pytest.importorskip("z3")


def mixed_net(tmp_path, seed):
    """Conv, ReLU, MaxPool, Flatten, Gemm, a residual Add: every op the encoding knows."""
    rng = np.random.default_rng(seed)
    b = OnnxBuilder([1, 1, 4, 4], rng=rng)
    h = b.add("Conv", [b.input, b.weight(2, 1, 3, 3), b.weight(2, fan_in=1, scale=0.3)], pads=[1, 1, 1, 1])
    h = b.add("MaxPool", [b.add("Relu", [h])], kernel_shape=[2, 2], strides=[2, 2])
    h = b.add("Flatten", [h], axis=1)
    h = _dense(b, h, 8, 5, rng, "Relu")
    h = b.add("Add", [h, _dense(b, h, 5, 5, rng)])
    y = _dense(b, b.add("Relu", [h]), 5, 3, rng)
    return load_onnx(b.save(tmp_path / "mixed.onnx", y)).to(torch.float64)


@pytest.mark.parametrize("seed", range(3))
def test_encoding_agrees_with_evaluation(tmp_path, seed):
    graph = mixed_net(tmp_path, seed)
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-1, 1, 16)
    lo, hi = centre - 0.3, centre + 0.3
    state = crown(graph, torch.as_tensor(lo)[None], torch.as_tensor(hi)[None])
    C, d = np.zeros((1, 3)), np.zeros(1)  # 0 <= 0: no spec constraint
    enc = encode(graph, numpy_bounds(state.bounds), lo, hi, C, d, np.zeros(1, int), 1)
    assert enc.n_unstable > 0 and enc.windows
    for x in rng.uniform(lo, hi, (5, 16)):
        solver, inputs = z3_solver.build(enc, d)
        solver.add(*[v == z3.Q(*Fraction(float(xi)).as_integer_ratio()) for v, xi in zip(inputs, x)])
        assert solver.check() == z3.sat
        model = solver.model()
        outputs = [float(model.eval(z3.Real(f"v{i}"), model_completion=True).as_fraction()) for i in enc.outputs]
        expected = evaluate(graph, torch.as_tensor(x)[None]).reshape(-1).numpy()
        np.testing.assert_allclose(outputs, expected, rtol=1e-9, atol=1e-9)


def test_float32_box_and_thresholds_round_the_safe_way():
    lo, hi = np.array([0.1, 0.3, 0.5]), np.array([0.2, 0.3, 0.5 + 1e-12])
    a, b = float32_box(lo, hi)
    assert np.all(a.astype(np.float32) == a) and np.all(b.astype(np.float32) == b)
    assert a[0] >= lo[0] and b[0] <= hi[0] and a[1] == b[1] == np.float32(0.3)
    d, eps = np.array([0.1, -3.7]), np.array([1e-5, 1e-5])
    assert np.all(thresholds(d, eps) >= d + eps) and np.all(thresholds(d, -eps) <= d - eps)


SHIPPED_SAT = [r for r in shipped_instances() if r["vnnlib"].endswith("digits_mlp_img1270_eps0.06.vnnlib")]


@pytest.mark.parametrize("row", SHIPPED_SAT, ids=lambda r: r["vnnlib"].rsplit("/", 1)[-1])
def test_shipped_verdicts_never_contradict_ground_truth(row):
    result = verifier.verify(row["onnx"], row["vnnlib"], timeout=30, method="smt")
    assert result.verdict == row["expected"], result.stage


def test_shipped_unsat_is_never_sat():
    row = next(r for r in shipped_instances() if r["expected"] == "unsat" and "mlp" in r["onnx"])
    result = verifier.verify(row["onnx"], row["vnnlib"], timeout=4, method="smt")
    assert result.verdict in ("unsat", "unknown", "timeout")


def test_cli_method_smt(tmp_path):
    row = SHIPPED_SAT[0]
    out = tmp_path / "result.txt"
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "verify", row["onnx"], row["vnnlib"],
                           "--method", "smt", "--timeout", "30", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "sat"
    assert "smt" in done.stderr
    assert out.read_text().startswith("sat\n((X_0 ")


def test_sigmoid_net_declines_with_a_reason(tmp_path):
    rng = np.random.default_rng(0)
    b = OnnxBuilder([1, 3], rng=rng)
    y = _dense(b, _dense(b, b.input, 3, 4, rng, "Sigmoid"), 4, 2, rng)
    onnx_path = b.save(tmp_path / "sig.onnx", y)
    spec = tmp_path / "sig.vnnlib"
    spec.write_text("".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} 0.0))\n(assert (<= X_{i} 0.5))\n"
                            for i in range(3)) + "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
                    "(assert (>= Y_1 Y_0))\n")
    result = verifier.verify(onnx_path, str(spec), timeout=10, method="smt")
    assert result.verdict == "unknown"
    assert "Sigmoid" in result.stage and "not piecewise linear" in result.stage


@pytest.mark.parametrize("offset, expected", [(-0.05, "unsat"), (0.05, "sat")])
def test_bab_closes_a_fully_split_leaf_exactly(tmp_path, monkeypatch, offset, expected):
    """With the LP made useless, a fully split leaf is still decided, by the exact stage:
    no counterexample below the leaf's true minimum, one above it."""
    import time

    from test_leaf_lp import leaf_at, leaf_grid_minimum, small_net
    from verifier.attack.replay import OnnxRunner
    from verifier.bab import relu_split
    from verifier.boundprop.optimize import relu_nodes
    from verifier.options import Options
    from verifier.pipeline import Query
    from verifier.spec.region import Disjunct, Region

    graph = small_net(tmp_path, 3)
    lo, hi = -torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    root, _, leaf = leaf_at(graph, lo, hi, torch.full((1, 2), 0.2, dtype=torch.float64))
    leaf_min = leaf_grid_minimum(graph, root, leaf, 401).item()
    threshold = leaf_min + offset
    region = Region(lo[0].numpy(), hi[0].numpy(), [Disjunct(np.ones((1, 1)), np.array([threshold]))])
    query = Query(load_onnx(tmp_path / "net.onnx"), [region], OnnxRunner(str(tmp_path / "net.onnx")),
                  Options(timeout=30, device="cpu"), time.monotonic())
    spec = query.spec(region)
    monkeypatch.setattr(relu_split, "solve_leaf", lambda *a: ([None], [{}]))
    pre = {n.name: n.inputs[0] for n in relu_nodes(root)}
    outcome = relu_split._close_leaves(query, region, spec, root, leaf, pre)
    if expected == "unsat":
        assert outcome is None  # closed
    else:
        assert outcome is not None and outcome.verdict == "sat", outcome
        assert outcome.witness.y[0] <= threshold
