"""Input split's choice between CROWN and forward-mode intermediate bounds, and the boxes it
times them on."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import onnx_factory as factory
from onnx_factory import one_torch_thread  # noqa: F401  (a fixture)
from verifier.bab import input_split
from verifier.boundprop.engine import crown
from verifier.boundprop.forward import forward_bounds
from verifier.boundprop.optimize import Spec
from verifier.graph.onnx_loader import load_onnx


@pytest.fixture(scope="module")
def two_input_relu_net(tmp_path_factory):
    """2 inputs, three ReLU layers of 40: a miniature of tllverifybench's shape."""
    rng = np.random.default_rng(5)
    b = factory.OnnxBuilder([1, 2], rng=rng)
    x, width = b.input, 2
    for _ in range(3):
        x = factory._dense(b, x, width, 40, rng, activation="Relu")
        width = 40
    x = factory._dense(b, x, width, 1, rng)
    path = factory.save(b.model(x), tmp_path_factory.mktemp("m") / "net.onnx")
    return load_onnx(path).to(torch.float64)


def root_box(lo, hi):
    return torch.tensor([lo], dtype=torch.float64), torch.tensor([hi], dtype=torch.float64)


def test_grid_halves_tile_the_box():
    lo, hi = root_box([-2.0, 0.0, 1.0], [2.0, 0.0, 3.0])  # the middle dimension is fixed
    probe_lo, probe_hi = input_split._grid_halves(lo, hi, 16)
    assert len(probe_lo) == 16
    assert (probe_lo[:, 1] == 0).all() and (probe_hi[:, 1] == 0).all(), "a fixed dimension is never split"
    assert (probe_lo >= lo).all() and (probe_hi <= hi).all()
    widths = (probe_hi - probe_lo)[:, [0, 2]]
    assert torch.isclose(widths.prod(1).sum(), torch.tensor(4.0 * 2.0, dtype=torch.float64))
    centres = ((probe_lo + probe_hi) / 2).numpy()
    assert len({tuple(c) for c in centres}) == 16, "the boxes overlap"


@pytest.mark.parametrize("forward_cost, crown_cost, expected", [
    (1.0, 1000.0, forward_bounds),  # far cheaper a box: worth a larger tree even on looser bounds
    (1.0, 2.0, crown),  # about as costly: CROWN's tighter bounds win
])
def test_forward_mode_only_when_far_cheaper(two_input_relu_net, monkeypatch, forward_cost, crown_cost, expected):
    graph = two_input_relu_net
    lo, hi = root_box([-2.0, -2.0], [2.0, 2.0])
    spec = Spec(torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                torch.zeros(1, dtype=torch.long), 1)
    monkeypatch.setattr(input_split, "_cost_per_box", lambda *args: (forward_cost, crown_cost))
    assert input_split.choose_intermediate_bounds(graph, lo, hi, spec) is expected


def test_costs_are_measured_per_box(two_input_relu_net):
    lo, hi = root_box([-2.0, -2.0], [2.0, 2.0])
    spec = Spec(torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                torch.zeros(1, dtype=torch.long), 1)
    forward_cost, crown_cost = input_split._cost_per_box(two_input_relu_net, lo, hi, spec, 1e-4)
    assert 0 < forward_cost < 0.1 and 0 < crown_cost < 0.1
    # a root pass too slow to repeat on a batch: its time stands in for CROWN's cost per box
    assert input_split._cost_per_box(two_input_relu_net, lo, hi, spec, 7.0)[1] == 7.0
