"""unsat must hold for the network as onnxruntime runs it in float32, not only over the reals.

The traps: hidden values large enough that float32 loses the small signal they carry, then
cancel (Gemm(x, b=+S), ReLU, Gemm(b=-S): the exact network passes x through, the float32
one rounds x to a multiple of S's spacing). Over the reals the property holds; in onnxruntime
it fails at some inputs. The verifier may answer sat (with a witness that replays in
onnxruntime) or unknown, never unsat.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import verifier
import verifier.boundprop.engine as engine
import verifier.decide as decide
import verifier.pipeline as pipeline
from onnx_factory import ALL, OnnxBuilder, make, run_onnxruntime
from verifier.float_error import output_error
from verifier.graph.evaluate import evaluate
from verifier.graph.onnx_loader import load_onnx
from verifier.pipeline import Query

N_IN = 2


def _gemm(b: OnnxBuilder, x: str, W: np.ndarray, bias: np.ndarray) -> str:
    return b.add("Gemm", [x, b.const(W), b.const(bias)])


def _cancelling_block(b: OnnxBuilder, x: str, n: int, scale: float, rng) -> str:
    """relu(x W1 + S) W2 - S 1 W2: exactly x W1 W2 over the box (the ReLU is always active)."""
    W1, W2 = rng.normal(size=(n, 4)), rng.normal(size=(4, n))
    h = b.add("Relu", [_gemm(b, x, W1, np.full(4, scale))])
    return _gemm(b, h, W2, -scale * W2.sum(0))


def cancelling_net(path, kind: str, scale: float, depth: int = 1, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    b = OnnxBuilder([1, N_IN], rng=rng)
    x = b.input
    if kind == "conv":
        x = b.add("Reshape", [x, b.ints([1, 1, 1, N_IN])])
        W1, W2 = rng.normal(size=(3, 1, 1, N_IN)), rng.normal(size=(1, 3, 1, 1))
        h = b.add("Relu", [b.add("Conv", [x, b.const(W1), b.const(np.full(3, scale))])])
        x = b.add("Conv", [h, b.const(W2), b.const(-scale * W2.sum(axis=(1, 2, 3)))])
        x = b.add("Flatten", [x])
        x = _gemm(b, x, np.ones((1, 1)), np.zeros(1))
    else:
        for _ in range(depth):
            block = _cancelling_block(b, x, N_IN, scale, rng)
            x = b.add("Add", [x, block]) if kind == "residual" else block
        x = _gemm(b, x, rng.normal(size=(N_IN, 1)), np.zeros(1))
    return b.save(path, x)


def write_spec(path, lo, hi, threshold: float) -> str:
    lines = [f"(declare-const X_{i} Real)\n" for i in range(len(lo))] + ["(declare-const Y_0 Real)\n"]
    for i, (a, c) in enumerate(zip(lo, hi)):
        lines += [f"(assert (>= X_{i} {float(a)!r}))\n", f"(assert (<= X_{i} {float(c)!r}))\n"]
    lines.append(f"(assert (<= Y_0 {float(threshold)!r}))\n")
    path.write_text("".join(lines))
    return str(path)


def float32_quantile(model: str, lo, hi, q: float = 0.0, n: int = 2000, seed: int = 0) -> float:
    """The q-quantile of Y_0 as onnxruntime computes it on n float32 points of the box (corners
    included); q = 0: the least."""
    rng = np.random.default_rng(seed)
    corners = np.array(np.meshgrid(*zip(lo, hi))).reshape(len(lo), -1).T
    x = np.concatenate([corners, lo + (hi - lo) * rng.random((n, len(lo)))]).astype(np.float32)
    x = np.clip(x, np.float32(lo), np.float32(hi))
    return float(np.quantile(run_onnxruntime(model, x.reshape(len(x), 1, -1)), q))


def violated_property(tmp_path, model: str, q: float = 0.0) -> str:
    """A spec whose unsafe set Y_0 <= d holds at a sampled float32 input in onnxruntime (d: the
    least sampled value, or the q-quantile)."""
    lo, hi = -np.ones(N_IN), np.ones(N_IN)
    return write_spec(tmp_path / "prop.vnnlib", lo, hi, float32_quantile(model, lo, hi, q))


def assert_never_unsat(model: str, spec: str, **options):
    result = verifier.verify(model, spec, **options)
    assert result.verdict != "unsat", f"unsat where onnxruntime violates ({result.stage})"
    if result.verdict == "sat":
        region, = verifier.api.load_spec(spec)
        y = run_onnxruntime(model, result.witness.x.reshape(1, 1, -1)).reshape(-1)
        assert decide.violates(region, y) and np.array_equal(result.witness.y, y.astype(np.float32))
        assert np.all(result.witness.x >= region.lo) and np.all(result.witness.x <= region.hi)
    return result


@pytest.fixture
def no_counterexamples(monkeypatch):
    """Every candidate is refused: only the unsat path can answer, and it must not."""
    monkeypatch.setattr(Query, "confirm", lambda self, region, x: None)


# ---------------------------------------------------------------- the hand-built trap

def the_trap(tmp_path):
    b = OnnxBuilder([1, 1])
    h = b.add("Relu", [_gemm(b, b.input, np.ones((1, 1)), np.array([1e6]))])
    model = b.save(tmp_path / "trap.onnx", _gemm(b, h, np.ones((1, 1)), np.array([-1e6])))
    return model, write_spec(tmp_path / "trap.vnnlib", [0.01], [1.0], 0.005)


def test_the_trap_violates_in_onnxruntime_only(tmp_path):
    model, _ = the_trap(tmp_path)
    assert run_onnxruntime(model, np.array([[[0.01]]], dtype=np.float32)).item() == 0.0
    graph = load_onnx(model).to(torch.float64)
    assert evaluate(graph, torch.tensor([[0.01]], dtype=torch.float64)).item() == pytest.approx(0.01)


@pytest.mark.parametrize("mode", [{}, {"split": "relu"}, {"split": "input"}, {"method": "smt"}],
                         ids=["auto", "relu", "input", "smt"])
def test_the_trap_is_never_unsat(tmp_path, mode):
    model, spec = the_trap(tmp_path)
    result = assert_never_unsat(model, spec, timeout=20, **mode)
    assert result.verdict == "sat"
    assert result.witness.y[0] <= 0.005


@pytest.mark.parametrize("mode", [{}, {"split": "relu"}, {"split": "input"}, {"method": "smt"}],
                         ids=["auto", "relu", "input", "smt"])
def test_the_trap_is_never_unsat_without_its_counterexample(tmp_path, no_counterexamples, mode):
    model, spec = the_trap(tmp_path)
    assert_never_unsat(model, spec, timeout=2, **mode)


# ---------------------------------------------------------------- the cancellation family

FAMILY = ([("mlp", s, 1) for s in (1e3, 1e4, 1e5, 1e6, 1e7)]
          + [("mlp", s, 2) for s in (1e4, 1e6)]
          + [(kind, s, 1) for kind in ("conv", "residual") for s in (1e4, 1e6)])


def family_member(tmp_path, kind, scale, depth, q: float = 0.0):
    model = cancelling_net(tmp_path / f"{kind}_{scale:g}_{depth}.onnx", kind, scale, depth)
    return model, violated_property(tmp_path, model, q)


@pytest.mark.parametrize("kind, scale, depth", FAMILY, ids=lambda v: str(v))
def test_cancellation_family_is_never_unsat(tmp_path, no_counterexamples, kind, scale, depth):
    model, spec = family_member(tmp_path, kind, scale, depth)
    assert_never_unsat(model, spec, timeout=1.5)


@pytest.mark.parametrize("kind, scale, depth", [("mlp", 1e6, 1), ("conv", 1e6, 1)], ids=str)
def test_cancellation_family_gets_sat_with_a_replaying_witness(tmp_path, kind, scale, depth):
    """With a few percent of the box violating in onnxruntime, the search finds one of them."""
    model, spec = family_member(tmp_path, kind, scale, depth, q=0.03)
    assert assert_never_unsat(model, spec, timeout=20).verdict == "sat"


def family_answers_unsat_somewhere(tmp_path, **options) -> list:
    """The family members on which a verifier answers unsat: the family test catches each."""
    caught = []
    for kind, scale, depth in FAMILY:
        model, spec = family_member(tmp_path, kind, scale, depth)
        try:
            assert_never_unsat(model, spec, timeout=1.5, **options)
        except AssertionError as failure:
            assert "unsat where onnxruntime violates" in str(failure)
            caught.append((kind, scale, depth))
    return caught


def test_bounds_that_forget_float32_rounding_are_caught(tmp_path, no_counterexamples, monkeypatch):
    """The mutant whose bound propagation charges no float32 rounding (the real-valued
    network alone) proves family members unsat: the family test fails on it."""
    monkeypatch.setattr(engine, "local_rounding", lambda node, magnitudes: None)
    assert len(family_answers_unsat_somewhere(tmp_path)) >= 3


def test_dropping_the_margin_from_refuted_disjuncts_is_caught(tmp_path, no_counterexamples, monkeypatch):
    """The mutant that decides unsat from d alone: the exact stage (z3 over the real-valued
    network) then proves family members unsat."""
    original = decide.refuted_disjuncts
    monkeypatch.setattr(pipeline, "refuted_disjuncts",
                        lambda lower, d, eps, owner, k: original(lower, d, torch.zeros_like(d), owner, k))
    import verifier.smt.stage as smt_stage
    monkeypatch.setattr(smt_stage, "_decide", _decide_without_margin(smt_stage._decide))
    assert len(family_answers_unsat_somewhere(tmp_path, method="smt")) >= 3


def _decide_without_margin(decide_with_margin):
    return lambda query, region, enc, eps, backend: decide_with_margin(query, region, enc, np.full_like(eps, 1e-300), backend)


# ---------------------------------------------------------------- properties

@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), log_scale=st.floats(2.0, 3.0))
def test_no_unsat_on_random_cancelling_nets(tmp_path_factory, seed, log_scale):
    """Random 3-layer nets with weights of about 10^log_scale and biases that cancel at the box
    centre: where a sampled float32 input violates in onnxruntime, never unsat."""
    tmp_path = tmp_path_factory.mktemp("cancel")
    rng = np.random.default_rng(seed)
    b = OnnxBuilder([1, N_IN], rng=rng)
    x, n, centre = b.input, N_IN, np.zeros(N_IN)
    for width in (6, 6, 1):
        W = rng.normal(size=(n, width)) * 10 ** log_scale
        bias = -centre @ W + rng.normal(size=width)  # cancels at the box centre's image
        x = _gemm(b, x, W, bias)
        centre = np.maximum(centre @ W + bias, 0)
        if width > 1:
            x = b.add("Relu", [x])
        n = width
    model = b.save(tmp_path / "net.onnx", x)
    spec = violated_property(tmp_path, model)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Query, "confirm", lambda self, region, x: None)
        assert_never_unsat(model, spec, timeout=1.5)


@pytest.mark.parametrize("family", sorted(ALL))
def test_error_bound_covers_onnxruntime(tmp_path, family):
    """|onnxruntime - exact| <= the float error bound on sampled float32 inputs, for every op
    family the loader reads (exact: the float64 evaluation of the float64 weights)."""
    rng = np.random.default_rng(3)
    for seed in range(2):
        path = make(family, seed, tmp_path)
        graph = load_onnx(path).to(torch.float64)
        lo = rng.normal(size=graph.input_size) - 1
        hi = lo + 2 * rng.random(graph.input_size)
        error, _ = output_error(graph, lo, hi)
        x = (lo + (hi - lo) * rng.random((200, graph.input_size))).astype(np.float32)
        x = np.clip(x, np.float32(lo), np.float32(hi))
        exact = evaluate(graph, torch.as_tensor(x.astype(np.float64))).reshape(len(x), -1).numpy()
        ort = run_onnxruntime(path, x.reshape(len(x), *graph.input_shape)).reshape(len(x), -1)
        assert (np.abs(ort - exact) <= error).all(), (np.abs(ort - exact) / error).max()
