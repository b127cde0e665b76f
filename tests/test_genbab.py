"""Branch and bound beyond ReLU (GenBaB cuts, verifier/bab/cuts.py): cutting the input interval
of a sin, sigmoid or product node gives two children whose bounds hold on their own parts of
the domain; verdicts with cuts match a grid's ground truth."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import verifier
from onnx_factory import OnnxBuilder, one_torch_thread  # noqa: F401  (a fixture)
from verifier.bab import cuts as cuts_module
from verifier.bab.relu_split import bound_domains, root_domains, split_children
from verifier.boundprop.engine import crown
from verifier.boundprop.optimize import Spec, relu_nodes
from verifier.graph.evaluate import evaluate
from verifier.graph.onnx_loader import load_onnx

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _net(path, seed: int, act: str) -> str:
    """2 -> 8 -> act -> 8 -> ReLU -> 1 (act: Sin, Sigmoid, or the product of two halves)."""
    rng = np.random.default_rng(seed)
    b = OnnxBuilder([1, 2], rng=rng)
    h = b.add("Gemm", [b.input, b.const(rng.normal(size=(2, 8)) * 1.5), b.const(rng.normal(size=8) * 0.3)])
    if act == "Mul":
        g = b.add("Gemm", [b.input, b.const(rng.normal(size=(2, 8))), b.const(rng.normal(size=8) * 0.3)])
        h = b.add("Mul", [h, g])
    else:
        h = b.add(act, [h])
    h = b.add("Gemm", [h, b.const(rng.normal(size=(8, 8)) / 2), b.const(rng.normal(size=8) * 0.3)])
    h = b.add("Relu", [h])
    y = b.add("Gemm", [h, b.const(rng.normal(size=(8, 1)) / 2), b.const(np.zeros(1))])
    return b.save(path, y)


def _cut_once(graph, lo, hi, mutate=None):
    """The root domain bounded, then cut at its best cut candidate; the children bounded."""
    state = crown(graph, lo, hi)
    spec = Spec(torch.ones(1, 1, dtype=torch.float64), torch.full((1,), 1e3, dtype=torch.float64),
                torch.zeros(1, dtype=torch.long), 1, torch.zeros(1, dtype=torch.float64))
    root = bound_domains(state, spec, root_domains(state, spec), 5)
    flat = root.candidate_scores()
    relu_count = sum(s[0].numel() for s in root.scores.values())
    cut = relu_count + int(flat[0, relu_count:].argmax())
    assert torch.isfinite(flat[0, cut]), "no cut candidate"
    pre_activation = {n.name: n.inputs[0] for n in relu_nodes(state)}
    children = split_children(root, torch.tensor([cut]), pre_activation)
    return root, bound_domains(state, spec, children, 5)


def _children_on_samples(graph, children, seed: int):
    """(whether the children cover 20,000 samples of the box, whether each child's bound holds
    at the samples of its own part)."""
    x = torch.as_tensor(np.random.default_rng(seed).uniform(-1, 1, (20000, 2)))
    values = evaluate(graph, x, keep_all=True)
    y = values[graph.output_name].reshape(-1)
    covered, holds = torch.zeros(len(x), dtype=torch.bool), True
    for c in range(2):
        inside = torch.ones(len(x), dtype=torch.bool)
        for name in children.cuts:
            l, u = children.bounds[name]
            v = values[name].reshape(len(x), -1)
            inside &= ((v >= l[c].reshape(1, -1) - 1e-12) & (v <= u[c].reshape(1, -1) + 1e-12)).all(1)
        covered |= inside
        holds = holds and bool((y[inside] >= children.lower[c, 0] - 1e-9).all())
    return bool(covered.all()), holds


def _box():
    return torch.full((1, 2), -1.0, dtype=torch.float64), torch.full((1, 2), 1.0, dtype=torch.float64)


@pytest.mark.parametrize("act", ["Sin", "Sigmoid", "Mul"])
@pytest.mark.parametrize("seed", range(3))
def test_cut_children_bounds_hold_on_their_parts(act, seed, tmp_path):
    graph = load_onnx(_net(tmp_path / "net.onnx", seed, act)).to(torch.float64)
    root, children = _cut_once(graph, *_box())
    assert _children_on_samples(graph, children, seed) == (True, True)
    assert children.lower.min() >= root.lower[0, 0] - 1e-9, "a child's bound is no worse than its parent's"


def test_a_child_on_the_wrong_side_is_caught(tmp_path, monkeypatch):
    """Mutant: both children keep the upper part [p, u] of the cut element; the points of
    [l, p] are then in neither child, which the coverage check sees."""
    graph = load_onnx(_net(tmp_path / "net.onnx", 0, "Sin")).to(torch.float64)
    monkeypatch.setattr(cuts_module, "UPPER_CUT", cuts_module.LOWER_CUT)
    _, children = _cut_once(graph, *_box())
    covered, _ = _children_on_samples(graph, children, 0)
    assert not covered


def _grid_max(onnx_path) -> float:
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    axis = np.linspace(-1.0, 1.0, 201)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2).astype(np.float32)
    return max(float(session.run(None, {"x": grid[k:k + 1]})[0][0, 0]) for k in range(len(grid)))


@pytest.mark.parametrize("act, seed, margin", [("Sin", 1, 0.1), ("Mul", 0, 0.1), ("Sigmoid", 2, 0.02)])
def test_relu_splitting_with_cuts_keeps_the_ground_truth(act, seed, margin, tmp_path, monkeypatch):
    """Just below the grid's maximum the property is violated (sat); above it by `margin` it
    holds, and ReLU splitting proves it by cutting the sin, product or sigmoid inputs (without
    cuts these leaves stay unknown: the exact stage declines the op)."""
    from verifier.bab import relu_split

    onnx_path = _net(tmp_path / "net.onnx", seed, act)
    top = _grid_max(onnx_path)
    cut, cut_children = [], relu_split.cut_children
    monkeypatch.setattr(relu_split, "cut_children", lambda *args: cut.append(1) or cut_children(*args))
    box = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))\n" for i in range(2))
    for threshold, expected in [(top - 0.05, "sat"), (top + margin, "unsat")]:
        spec = tmp_path / f"{expected}.vnnlib"
        spec.write_text(box + f"(declare-const Y_0 Real)\n(assert (>= Y_0 {threshold!r}))\n")
        result = verifier.verify(onnx_path, spec, timeout=30, split="relu")
        assert result.verdict == expected, (threshold, result.stage)
    assert cut, "the proof cut some input interval"
