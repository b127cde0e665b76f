"""Input split's choice between CROWN and forward-mode intermediate bounds, and the boxes it
times them on."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import onnx_factory as factory
from onnx_factory import one_torch_thread  # noqa: F401  (a fixture)
from verifier.bab import input_split
from verifier.boundprop.engine import crown, crown_multiply_adds
from verifier.boundprop.forward import forward_bounds, forward_multiply_adds
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


def one_row_spec():
    return Spec(torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                torch.zeros(1, dtype=torch.long), 1)


@pytest.mark.parametrize("ratio, expected", [
    (1000.0, forward_bounds),  # far cheaper a box: worth a larger tree even on looser bounds
    (2.0, crown),  # about as costly: CROWN's tighter bounds win
])
def test_forward_mode_only_when_far_cheaper(two_input_relu_net, monkeypatch, ratio, expected):
    graph = two_input_relu_net
    lo, hi = root_box([-2.0, -2.0], [2.0, 2.0])
    forward = forward_multiply_adds(graph)
    monkeypatch.setattr(input_split, "_crown_cost_per_box", lambda *args: ratio * forward)
    assert input_split.choose_intermediate_bounds(graph, lo, hi, one_row_spec()) is expected


def test_crown_cost_counts_the_rows_it_bounds(two_input_relu_net):
    """The cost model against a hand count: 2 rows per unstable neuron back through the layers up
    to it, one spec row through the whole net; no unstable neuron leaves the spec row alone."""
    graph = two_input_relu_net
    lo, hi = root_box([-2.0, -2.0], [2.0, 2.0])
    state = crown(graph, lo, hi)
    matmuls = [n for n in graph.nodes if n.op == "matmul"]
    layer_cost = [n.tensors["W"].shape[0] * n.tensors["W"].shape[1] for n in matmuls]
    upto, expected = 0, 0.0
    for node, cost in zip(matmuls[:-1], layer_cost):
        upto += cost + node.size * (node is not matmuls[0])  # the ReLU before it counts one per element
        l, u = state.bounds[node.name]
        expected += 2 * int(((l < 0) & (u > 0)).sum()) * upto
    expected += graph.multiply_adds()
    assert crown_multiply_adds(state, 1) == pytest.approx(expected)
    point = root_box([0.5, 0.5], [0.5, 0.5])
    assert crown_multiply_adds(crown(graph, *point), 1) == graph.multiply_adds()
    assert forward_multiply_adds(graph) == 2 * 2 * graph.multiply_adds()


def test_probe_boxes_only_within_their_budget(two_input_relu_net, monkeypatch):
    """Boxes tiling the root count CROWN's rows, unless bounding them would cost more than the
    probe's budget of multiply-adds: then the root's own count stands in."""
    graph = two_input_relu_net
    lo, hi = root_box([-2.0, -2.0], [2.0, 2.0])
    root_state = crown(graph, lo, hi)
    root_cost = crown_multiply_adds(root_state, 1)
    probed = input_split._crown_cost_per_box(graph, lo, hi, one_row_spec(), root_state)
    assert probed < root_cost, "halves have fewer unstable neurons than the root"
    monkeypatch.setattr(input_split, "_PROBE_MULTIPLY_ADDS", root_cost)
    assert input_split._crown_cost_per_box(graph, lo, hi, one_row_spec(), root_state) == root_cost


def lying_clock():
    """A clock that jumps 1000 s at every reading."""
    readings = iter(range(10 ** 9))
    return lambda: 1000.0 * next(readings)


def test_choice_ignores_the_clock(two_input_relu_net, monkeypatch):
    """The same choice when every clock reading jumps: a timing probe (the old rule) saw CROWN take
    1000 s a box here and went to forward mode."""
    import time

    graph = two_input_relu_net
    lo, hi = root_box([-2.0, -2.0], [2.0, 2.0])
    honest = input_split.choose_intermediate_bounds(graph, lo, hi, one_row_spec())
    assert honest is crown
    for clock in ("perf_counter", "monotonic", "time", "process_time"):
        monkeypatch.setattr(time, clock, lying_clock())
    assert input_split.choose_intermediate_bounds(graph, lo, hi, one_row_spec()) is honest


VNNCOMP_CHOICES = [  # the choices the cost model was calibrated on (see input_split)
    ("acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx", "acasxu/vnnlib/prop_5.vnnlib", "crown"),
    ("acasxu/onnx/ACASXU_run2a_5_1_batch_2000.onnx", "acasxu/vnnlib/prop_3.vnnlib", "crown"),
    ("tllverifybench/onnx/tllBench_n=2_N=M=8_m=1_instance_0_0.onnx", "tllverifybench/vnnlib/property_N=8_0.vnnlib",
     "crown"),
    ("tllverifybench/onnx/tllBench_n=2_N=M=24_m=1_instance_2_1.onnx", "tllverifybench/vnnlib/property_N=24_1.vnnlib",
     "forward_bounds"),
    # forward mode as tight as CROWN at the root: its tree is as small, and each box cheaper
    ("reach_prob_density/onnx/vdp.onnx", "reach_prob_density/vnnlib/vdp_0.vnnlib", "forward_bounds"),
]


@pytest.mark.parametrize("onnx, vnnlib, expected", VNNCOMP_CHOICES, ids=lambda v: str(v).rsplit("/", 1)[-1])
def test_vnncomp_choices(vnncomp, onnx, vnnlib, expected):
    """ACAS Xu and tllverifybench N=8 keep CROWN (forward mode's tree is 100 times larger on ACAS
    Xu), the wide N=24 networks take forward mode, and so does vdp, where it is as tight."""
    from verifier.spec.region import stack_rows
    from verifier.spec.vnnlib import parse_vnnlib

    graph = load_onnx(vnncomp / onnx).to(torch.float64)
    region = parse_vnnlib(vnncomp / vnnlib)[0]
    C, d, owner = (torch.as_tensor(a) for a in stack_rows(region))
    spec = Spec(C, d, owner, len(region.disjuncts))
    lo, hi = (torch.as_tensor(a, dtype=torch.float64).unsqueeze(0) for a in (region.lo, region.hi))
    assert input_split.choose_intermediate_bounds(graph, lo, hi, spec).__name__ == expected


def test_a_timeout_names_its_stage_and_tree_size(vnncomp, monkeypatch):
    """A run stopped by its deadline inside input splitting says so, with the boxes bounded by then
    (ACAS Xu 3_3 prop_2 needs thousands of boxes; the clock is made to run out at the third round)."""
    import verifier
    from verifier import pipeline

    check_time = pipeline.Query.check_time

    def deadline_at_third_round(self):
        if self.progress.startswith("input split (") and "boxes" in self.progress:
            self.seen = getattr(self, "seen", set()) | {self.progress}
            if len(self.seen) == 3:
                raise pipeline.Deadline()
        check_time(self)

    monkeypatch.setattr(pipeline.Query, "check_time", deadline_at_third_round)
    result = verifier.verify(vnncomp / "acasxu/onnx/ACASXU_run2a_3_3_batch_2000.onnx",
                             vnncomp / "acasxu/vnnlib/prop_2.vnnlib", timeout=300)
    assert result.verdict == "timeout"
    stage, boxes = result.stage.split(" (")
    assert stage == "deadline in input split" and int(boxes.split()[0]) > 1, result.stage


class _Stop(Exception):
    pass


@pytest.mark.parametrize("intermediate", [crown, forward_bounds])
def test_bounding_boxes_checks_the_deadline(two_input_relu_net, intermediate):
    """Both kinds of intermediate bounds check the clock as they go (forward mode after each node),
    and so does the choice between them: a large batch of boxes cannot overrun the timeout."""
    def deadline_passed():
        raise _Stop()

    lo, hi = input_split._grid_halves(*root_box([-2.0, -2.0], [2.0, 2.0]), 64)
    with pytest.raises(_Stop):
        input_split.bound_boxes(two_input_relu_net, lo, hi, one_row_spec(), intermediate,
                                deadline_check=deadline_passed)
    with pytest.raises(_Stop):
        input_split.choose_intermediate_bounds(two_input_relu_net, lo[:1], hi[:1], one_row_spec(), deadline_passed)


def test_boxes_per_round_within_the_memory_budget(two_input_relu_net, monkeypatch):
    """Rounds keep their 1024 boxes on small networks and take fewer where the boxes' linear
    functions (forward mode: n_in per neuron; backward: two rows) would pass the engine's
    memory budget."""
    graph = two_input_relu_net
    assert input_split.boxes_per_round(graph, crown, one_row_spec(), 1024) == 1024
    neurons = sum(node.size for node in graph.nodes)
    monkeypatch.setattr(input_split, "ROUND_ELEMENTS", 2 * 2 * neurons * 10)
    assert input_split.boxes_per_round(graph, forward_bounds, one_row_spec(), 1024) == 10
    assert input_split.boxes_per_round(graph, crown, one_row_spec(), 1024) == 10
    monkeypatch.setattr(input_split, "ROUND_ELEMENTS", 1)
    assert input_split.boxes_per_round(graph, crown, one_row_spec(), 1024) == 1


def test_points_tried_in_chunks_give_every_disjuncts_margin(two_input_relu_net, monkeypatch):
    """Candidate points are evaluated in chunks (a box round's corners can be millions of
    points): each point's margin is its smallest over the disjuncts of the largest over their
    rows, the same whatever the chunk size."""
    from verifier.attack.pgd import disjunct_margins, disjunct_tensors, margins
    from verifier.bab import common
    from verifier.graph.evaluate import evaluate
    from verifier.spec.region import Disjunct, Region

    graph = two_input_relu_net
    rng = np.random.default_rng(5)
    n_out = graph.output_size
    region = Region(np.full(2, -2.0), np.full(2, 2.0),
                    [Disjunct(rng.normal(size=(rows, n_out)), rng.normal(size=rows)) for rows in (1, 3, 2)])
    points = torch.as_tensor(rng.uniform(-2, 2, (50, 2)))
    C, d = disjunct_tensors(region, "cpu", torch.float64)
    whole = disjunct_margins(graph, points, C, d, common.points_per_chunk(graph)).min(1).values
    y = evaluate(graph, points).reshape(50, -1)
    expected = torch.stack([margins(y, C, d, torch.full((50,), k)) for k in range(3)], 1).min(1).values
    assert torch.allclose(whole, expected)
    monkeypatch.setattr(common, "_EVALUATED_ELEMENTS", 1)
    assert common.points_per_chunk(graph) == 1
    assert torch.allclose(disjunct_margins(graph, points, C, d, common.points_per_chunk(graph)).min(1).values, whole)
