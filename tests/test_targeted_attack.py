"""Neuron-targeted PGD (verifier/attack/targeted.py) and PGD inside branch-and-bound
subdomains: hinge coefficients built from the right weights and sides, hidden counterexamples
of the shipped soundness set found and confirmed by onnxruntime, and runs held inside a
subdomain of split neurons."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from verifier import api
from verifier.attack.replay import OnnxRunner
from verifier.attack.targeted import activation_nodes, choose_targets, hinged_candidates, targeted_candidates
from verifier.boundprop.engine import crown
from verifier.decide import confirm_counterexample
from verifier.graph.evaluate import evaluate
from verifier.runtime import threads
from verifier.soundness.classify import CORRECT, classify
from verifier.soundness.replay import OnnxModel
from verifier.soundness.results import parse_result
from verifier.soundness.vnnlib_io import read_spec
from verifier.spec.region import stack_rows

SHIPPED = Path(__file__).resolve().parents[1] / "bench_instances" / "soundness"


def load(name: str):
    net = name.rsplit("_p", 1)[0]
    onnx, vnnlib = SHIPPED / "onnx" / f"{net}.onnx", SHIPPED / "vnnlib" / f"{name}.vnnlib"
    graph = api.load_model(onnx)
    region = api.load_spec(vnnlib, graph)[0]
    return onnx, vnnlib, graph, region


def root_targets(graph, region, count: int):
    graph64, graph32 = graph.to(torch.float64, "cpu"), graph.to(torch.float32, "cpu")
    lo, hi = (torch.as_tensor(v).unsqueeze(0) for v in (region.lo, region.hi))
    state = crown(graph64, lo, hi)
    C, _, owner = stack_rows(region)
    return graph32, state, choose_targets(graph32, state, torch.as_tensor(C), torch.as_tensor(owner), count)


def test_hinges_weigh_the_feeders_by_the_layer_weights():
    """On an MLP the feeders of a unit in the second hidden layer are the first layer's units,
    weighted by the Gemm row between them, signed by the side that raises the target, and
    only where the feeder is unstable."""
    _, _, graph, region = load("n00_mlp_relu_20_p0_interior")
    graph32, state, targets = root_targets(graph, region, 8)
    first, second = activation_nodes(graph32)[:2]
    own = targets.coefficients[second.inputs[0]]
    feeders = targets.coefficients[first.inputs[0]]
    weight = next(n for n in graph32.nodes if n.name == second.inputs[0]).tensors["W"].float()  # (in, out)
    l, u = (t[0].flatten().float() for t in state.bounds[first.inputs[0]])
    unstable = (l < 0) & (u > 0)
    checked = 0
    for t in range(len(targets)):
        units = own[t].nonzero().flatten()
        if len(units) != 1:
            continue
        j = int(units[0])
        scale = own[t, j]  # side / range of the target's pre-activation
        expected = weight[:, j] * scale * unstable
        assert torch.allclose(feeders[t], expected, rtol=1e-5, atol=1e-7)
        checked += 1
    assert checked > 0


def test_targets_are_unstable_units_on_the_side_that_lowers_the_margin():
    _, _, graph, region = load("n00_mlp_relu_20_p0_interior")
    _, state, targets = root_targets(graph, region, 8)
    for node in activation_nodes(graph):
        own = targets.coefficients[node.inputs[0]]
        l, u = (t[0].flatten() for t in state.bounds[node.inputs[0]])
        assert torch.all(((l < 0) & (u > 0)) | (own == 0).all(0)), node.name


@pytest.mark.parametrize("name", ["n01_cnn_tanh_3x5x5_p0_corner", "n02_resnet_sigmoid_3x5x5_p1_corner"])
def test_finds_the_hidden_counterexample_of_a_conv_plant(name):
    """Pockets behind saturated units of a CNN and a ResNet, which the generator's own strong
    attack (100,000 samples and 1,024 PGD runs) missed; the find replays in onnxruntime and the
    harness judges it CORRECT."""
    onnx, vnnlib, graph, region = load(name)
    graph32, _, targets = root_targets(graph, region, 8)
    runner = OnnxRunner(str(onnx))
    witness = None
    with threads(1):  # as the pipeline runs attacks on small networks
        for candidates in targeted_candidates(graph32, region, targets, 13, 300, deadline=float("inf")):
            witness = next((w for w in (confirm_counterexample(runner, region, x) for x in candidates[:8]) if w), None)
            if witness is not None:
                break
    assert witness is not None
    text = "sat\n(" + "\n ".join(f"(X_{i} {float(v)!r})" for i, v in enumerate(witness.x)) + ")\n"
    assert classify("sat", parse_result(text), read_spec(vnnlib), OnnxModel(str(onnx))).status == CORRECT


def test_a_hinged_run_ends_in_its_subdomain(monkeypatch):
    """Runs that start on the wrong side of a split (an unstable first-layer ReLU, each run
    constrained to the side it does not start on) end on the right side, up to a thousandth of
    the unit's range (the hinge is 0 there, so a run may hover at the boundary): the hinge pulls
    them across, as PGD inside a branch-and-bound domain needs."""
    from verifier.attack import pgd, targeted

    _, _, graph, region = load("n00_mlp_relu_20_p0_interior")
    graph32 = graph.to(torch.float32, "cpu")
    node = activation_nodes(graph32)[0]
    lo64, hi64 = (torch.as_tensor(v).unsqueeze(0) for v in (region.lo, region.hi))
    l, u = (t[0].flatten() for t in crown(graph.to(torch.float64, "cpu"), lo64, hi64).bounds[node.inputs[0]])
    unit = int(((l < 0) & (u > 0)).float().argmax())
    lo, hi = (torch.as_tensor(v, dtype=torch.float32) for v in (region.lo, region.hi))
    x = lo + (hi - lo) * torch.rand(16, lo.numel(), generator=torch.Generator().manual_seed(0))
    pre = lambda points: evaluate(graph32, points, keep_all=True)[node.inputs[0]].flatten(1)[:, unit]
    sides = -torch.sign(pre(x))
    hinges = {node.inputs[0]: torch.zeros(16, node.size)}
    hinges[node.inputs[0]][:, unit] = sides / float(u[unit] - l[unit])
    last = {}

    def spy(graph, points, keep_all=False):
        last["x"] = points.detach().reshape(len(points), -1)
        return evaluate(graph, points, keep_all)

    monkeypatch.setattr(targeted, "SNAP_EVERY", 0)  # so that the last evaluation is the runs' end
    monkeypatch.setattr(pgd, "evaluate", spy)
    list(hinged_candidates(graph32, region, x, torch.zeros(16, dtype=torch.long), hinges, 60, float("inf")))
    start_gap = pre(x) * sides
    end_gap = pre(last["x"]) * sides
    assert torch.all(start_gap < 0) and start_gap.min() < -0.05 * float(u[unit] - l[unit])
    assert torch.all(end_gap > -1e-3 * float(u[unit] - l[unit]))


def test_targets_in_the_first_activation_layer_have_no_feeders(tmp_path):
    """One hidden ReLU layer (safenlp's shape): every target's pre-activation is a function of
    the input alone, so its hinge is its own and no feeder weights are taken (autograd has
    nothing to differentiate; this raised before)."""
    import onnx_factory as factory
    from verifier.spec.region import Disjunct, Region

    rng = np.random.default_rng(3)
    b = factory.OnnxBuilder([1, 6], rng=rng)
    y = factory._dense(b, factory._dense(b, b.input, 6, 12, rng, "Relu"), 12, 2, rng)
    graph = api.load_model(factory.save(b.model(y), tmp_path / "one_layer.onnx"))
    region = Region(np.full(6, -1.0), np.full(6, 1.0), [Disjunct(np.array([[1.0, -1.0]]), np.array([0.0]))])
    graph32, state, targets = root_targets(graph, region, 4)
    (relu,) = activation_nodes(graph32)
    assert len(targets) > 0
    own = targets.coefficients[relu.inputs[0]]
    assert ((own != 0).sum(1) == 1).all()  # the target's own hinge only
