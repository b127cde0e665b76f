"""Refined intermediate bounds: each is a sound bound (below every value the neuron takes over
the box), and tighter than CROWN's where branching pays."""
import time

import numpy as np
import pytest
import torch

from onnx_factory import OnnxBuilder, _dense
from verifier.bab import refine, relu_split
from verifier.boundprop.engine import crown
from verifier.graph.evaluate import evaluate
from verifier.graph.onnx_loader import load_onnx

import verifier
from conftest import shipped_instances


def deep_net(tmp_path, seed, width=10, depth=4):
    rng = np.random.default_rng(seed)
    b = OnnxBuilder([1, 2], rng=rng)
    h, n = b.input, 2
    for _ in range(depth):
        h, n = _dense(b, h, n, width, rng, "Relu"), width
    y = _dense(b, h, n, 1, rng)
    return load_onnx(b.save(tmp_path / "deep.onnx", y)).to(torch.float64)


def grid_values(graph, points: int = 301) -> dict:
    axis = torch.linspace(-1, 1, points, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    return evaluate(graph, grid, keep_all=True)


def refined_state(graph, seconds_per_layer: float):
    lo, hi = -torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    state = crown(graph, lo, hi, iterations=10)
    plain = {k: (l.clone(), u.clone()) for k, (l, u) in state.bounds.items()}
    for name in refine.refinable_layers(state):
        l, u = refine.refine_node(state, name, time.monotonic() + seconds_per_layer)
        state.set_bounds(name, l, u)
        crown(graph, lo, hi, state=state, iterations=10, after=name)
    return state, plain


@pytest.mark.parametrize("seed", range(4))
def test_refined_bounds_hold_every_value_the_neurons_take(tmp_path, seed):
    graph = deep_net(tmp_path, seed)
    state, plain = refined_state(graph, seconds_per_layer=1.0)
    values = grid_values(graph)
    for relu in relu_split.relu_nodes(state):
        name = relu.inputs[0]
        l, u = (t.flatten() for t in state.bounds[name])
        v = values[name].flatten(1)
        assert bool((l <= v.min(0).values + 1e-12).all()) and bool((u >= v.max(0).values - 1e-12).all())
        pl, pu = (t.flatten() for t in plain[name])
        assert bool((l >= pl).all()) and bool((u <= pu).all())


def test_refinement_tightens_the_deeper_layers(tmp_path):
    tighter = 0
    for seed in range(4):
        graph = deep_net(tmp_path, seed)
        state, plain = refined_state(graph, seconds_per_layer=1.0)
        last = relu_split.relu_nodes(state)[-1].inputs[0]
        width = lambda b: float((b[1] - b[0]).sum())
        tighter += width(state.bounds[last]) < 0.95 * width(plain[last])
    assert tighter >= 2


def test_the_first_relu_layer_is_not_refined(tmp_path):
    graph = deep_net(tmp_path, 0)
    lo, hi = -torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    state = crown(graph, lo, hi)
    first = relu_split.relu_nodes(state)[0].inputs[0]
    layers = refine.refinable_layers(state)
    assert layers and first not in layers


MLP_ROWS = [r for r in shipped_instances() if r["expected"] in ("sat", "unsat") and "mlp" in r["onnx"]]


@pytest.fixture
def refine_at_once(monkeypatch):
    """Branch and bound refines before its first tree, with nothing before it but CROWN (no
    SDP stage, no attacks): only its own verdicts reach the result."""
    from verifier import pipeline
    from verifier.sdp import stage

    monkeypatch.setattr(relu_split, "FIRST_SHARE", 0.0)
    monkeypatch.setattr(stage, "sdp_stage", lambda query, region: (region, ""))
    monkeypatch.setattr(pipeline, "attack", lambda *args, **kwargs: None)


@pytest.mark.parametrize("row", MLP_ROWS, ids=lambda r: r["vnnlib"].rsplit("/", 1)[-1])
def test_branch_and_bound_after_refining_keeps_the_ground_truth(row, refine_at_once):
    result = verifier.verify(row["onnx"], row["vnnlib"], timeout=20)
    if row["expected"] == "unsat":
        assert result.verdict == "unsat" and ("refined" in result.stage or result.stage == "crown"), result.stage
    else:
        assert result.verdict in ("sat", "timeout"), result.stage


@pytest.mark.slow
def test_refinement_proves_a_deep_mlp_that_plain_branch_and_bound_leaves_open(vnncomp):
    """eran mnist_relu_9_200, image 2697: alpha-CROWN leaves the output bound at -26 and ReLU
    branch and bound at -6 after 120 s; refined early layers prove it at the root."""
    model = vnncomp / "eran/onnx/mnist_relu_9_200.onnx"
    spec = vnncomp / "eran/vnnlib/mnist/mnist_spec_idx_2697_eps_0.01500.vnnlib"
    result = verifier.verify(model, spec, timeout=120)
    assert result.verdict == "unsat" and "refined" in result.stage, result
