"""The index, structural and step ops (issue 17, part a): evaluation against onnxruntime, bounds
containing sampled outputs (IBP, CROWN, forward mode), the step relaxations on many intervals,
the float32 error bound against onnxruntime, and the loader's messages."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import cached_models
import torch
from onnx import TensorProto

import index_factory as factory
from onnx_factory import OnnxBuilder, one_torch_thread, run_onnxruntime  # noqa: F401  (a fixture)
from test_bounds_property import assert_within, interval_classes, random_box, sample_box
from test_onnx_ops import assert_matches_onnxruntime, assert_one_line, random_inputs
from verifier.api import bounds
from verifier.boundprop.engine import crown, ibp
from verifier.boundprop.forward import forward_bounds
from verifier.errors import UserError
from verifier.float_error import output_error
from verifier.graph.evaluate import evaluate
from verifier.graph.onnx_loader import load_onnx
from verifier.ops import RULES
from verifier.ops.step import Floor, Sign, Truncate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEEDS = range(6)
TOL = 1e-9


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """(family, seed) -> (path, Graph in float64), built once per module."""
    return cached_models(tmp_path_factory, factory.make, "index_models")


# --- evaluation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("family", sorted(factory.FAMILIES))
def test_matches_onnxruntime(graphs, family, seed):
    path, _ = graphs(family, seed)
    x = random_inputs(path, 6, seed) * (3.0 if family in factory.STEP else 1.0)
    assert_matches_onnxruntime(path, x)


def test_no_relaxation_flag_marks_exactly_the_exact_families(graphs):
    for family in factory.FAMILIES:
        _, graph = graphs(family, 0)
        flagged = any(RULES[n.op].no_relaxation for n in graph.nodes)
        assert flagged == (family in factory.EXACT), family


# --- bounds -------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(factory.FAMILIES))
@pytest.mark.parametrize("width", ["small", "medium", "wide"])
def test_bounds_contain_sampled_outputs(graphs, family, width):
    """IBP, CROWN and forward-mode bounds of every node hold on 10k sampled points of two boxes."""
    for seed in range(2):
        _, graph = graphs(family, seed)
        rng = np.random.default_rng(seed)
        lo, hi = random_box(rng, graph.input_size, width, batch=2)
        lo_t, hi_t = torch.as_tensor(lo), torch.as_tensor(hi)
        states = {"ibp": ibp(graph, lo_t, hi_t), "crown": crown(graph, lo_t, hi_t),
                  "forward": forward_bounds(graph, lo_t, hi_t)}
        for b in range(2):
            values = evaluate(graph, torch.as_tensor(sample_box(rng, lo[b], hi[b], 10_000)), keep_all=True)
            for method, state in states.items():
                for node in graph.nodes:
                    l, u = state.bounds[node.name]
                    assert_within(values[node.name], l[b], u[b], f"{method} bounds of {node.name} ({node.op})")
        lower, upper = bounds(graph, (lo[0], hi[0]), "crown")
        assert np.isfinite(lower).all() and np.isfinite(upper).all()


@pytest.mark.parametrize("family", ["gather", "expand", "scatter_nd", "conv_transpose", "resize", "upsample",
                                    "generator_net", "gather_net"])
def test_linear_index_maps_propagate_backward_by_their_transpose(graphs, family):
    """For take, place and conv_transpose nodes: lam . op(x) = backward(lam) . x + bias, for
    random x and lam (the backward rule is the exact adjoint of the op)."""
    checked = 0
    for seed in SEEDS:
        _, graph = graphs(family, seed)
        rng = torch.Generator().manual_seed(seed)
        for node in graph.nodes:
            if node.op not in ("take", "place", "conv_transpose"):
                continue
            x = torch.randn(2, *graph.shape_of(node.inputs[0]), generator=rng, dtype=torch.float64)
            lam = torch.randn(2, 3, *node.shape, generator=rng, dtype=torch.float64)
            rule = RULES[node.op]
            (lam_in,), bias = rule.backward(node, lam, graph, None)
            lhs = (lam * rule.forward(node, x).unsqueeze(1)).flatten(2).sum(-1)
            rhs = (lam_in * x.unsqueeze(1)).flatten(2).sum(-1) + (0 if bias is None else bias)
            torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)
            checked += 1
    assert checked > 0


# --- step functions -----------------------------------------------------------------------------

STEP_RULES = {"sign": Sign(), "floor": Floor(), "trunc": Truncate()}


def jump_points(l: torch.Tensor, u: torch.Tensor, points: int) -> torch.Tensor:
    """A grid of [l, u] plus the integers inside and their float64 neighbours (where steps jump)."""
    t = torch.linspace(0, 1, points, dtype=torch.float64)
    grid = l.unsqueeze(-1) + (u - l).unsqueeze(-1) * t
    k = torch.arange(-3, 4, dtype=torch.float64)
    near = torch.ceil(l).unsqueeze(-1) + k
    jumps = torch.cat([near, torch.nextafter(near, near - 1), torch.nextafter(near, near + 1)], -1)
    xs = torch.cat([grid, jumps], -1)
    return torch.minimum(torch.maximum(xs, l.unsqueeze(-1)), u.unsqueeze(-1))


@pytest.mark.parametrize("name", sorted(STEP_RULES))
def test_step_relaxation_holds_on_many_intervals(name):
    rule = STEP_RULES[name]
    l, u = interval_classes(np.random.default_rng(0), 3000)
    a_lo, b_lo, a_up, b_up = rule.relax(None, l, u)
    assert (a_lo >= 0).all() and (a_up >= 0).all()  # nondecreasing: forward mode relies on it
    xs = jump_points(l, u, 2001)
    fx = rule.fn(xs)
    below = (a_lo.unsqueeze(-1) * xs + b_lo.unsqueeze(-1) - fx).amax(-1)
    above = (fx - a_up.unsqueeze(-1) * xs - b_up.unsqueeze(-1)).amax(-1)
    assert below.max() <= 1e-12 * (1 + l.abs().max()), "a lower line above the step"
    assert above.max() <= 1e-12 * (1 + l.abs().max()), "an upper line below the step"
    # IBP is the function at both ends
    lo, hi = rule.ibp(None, (l, u))
    assert (lo <= fx.amin(-1)).all() and (hi >= fx.amax(-1)).all()


@pytest.mark.parametrize("name", sorted(STEP_RULES))
def test_step_relaxation_is_exact_without_a_jump(name):
    """On an interval with no jump the step is constant, and so are both lines."""
    rule = STEP_RULES[name]
    l = torch.tensor([0.2, 1.1, -3.7, 5.0, -0.9])
    u = torch.tensor([0.9, 1.9, -3.1, 5.5, -0.1]).double()
    a_lo, b_lo, a_up, b_up = rule.relax(None, l.double(), u)
    if name == "sign":
        assert torch.equal(b_lo, b_up) and (a_lo == 0).all() and (a_up == 0).all()
    else:
        assert (a_lo == 0).all() and (a_up == 0).all() and torch.equal(b_lo, rule.fn(l.double()))


@pytest.mark.parametrize("name", sorted(STEP_RULES))
def test_step_float_error_is_the_jump_only_near_a_step(name):
    """[l, l + 0.3] with an input error of 0.01: a flip only where the widened interval holds a
    jump (an integer; 0 for sign), and no error at all for an exact input."""
    rule = STEP_RULES[name]
    l = torch.tensor([0.5, 0.999, 2.2, -1.0, -2.5, -0.2], dtype=torch.float64)
    u = l + 0.3
    e = torch.full_like(l, 0.01)
    error = rule.float_error(None, [e], [u.abs() + e], [(l, u)])
    crosses = torch.tensor([False, False, False, False, False, True]) if name == "sign" else \
        torch.tensor([False, True, False, True, False, True])
    assert torch.equal(error > 0, crosses), error
    assert (error[crosses] >= (2.0 if name == "sign" else 1.0)).all()
    assert (rule.float_error(None, [torch.zeros_like(l)], [u.abs()], [(l, u)]) == 0).all()


# --- float32 execution error --------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(set(factory.FAMILIES) - factory.EXACT))
def test_float_error_bounds_onnxruntime(graphs, family):
    """|onnxruntime's output at float32(x) - the exact output at x| <= the bound of
    verifier.float_error, at sampled points x of a box."""
    for seed in range(3):
        path, graph = graphs(family, seed)
        rng = np.random.default_rng(seed)
        lo, hi = random_box(rng, graph.input_size, "medium")
        if family in factory.STEP:
            lo, hi = lo * 3, hi * 3
        error, _ = output_error(graph, lo, hi)
        x = np.concatenate([lo + (hi - lo) * rng.random((300, lo.size)), [lo, hi]])
        exact = evaluate(graph, torch.as_tensor(x)).flatten(1).numpy()  # the real-valued network at x
        executed = run_onnxruntime(path, x.astype(np.float32).reshape(len(x), *graph.input_shape)).reshape(len(x), -1)
        gap = np.abs(executed - exact)
        assert (gap <= error).all(), f"seed {seed}: error {gap.max():.3g} beyond the bound {error[gap.argmax(1)]}"


# --- the loader ---------------------------------------------------------------------------------

def _range_of_variable(b):
    limit = b.add("Squeeze", [b.add("Slice", [b.input, b.ints([0, 0]), b.ints([1, 1])]), b.ints([0, 1])])
    return b.add("Range", [b.const(np.float32(0)), limit, b.const(np.float32(1))], name="bad_range")


def _resize_cubic(b):
    return b.add("Resize", [b.input, b.const(np.zeros(0, np.float32)), b.const(np.array([1, 2], np.float32))],
                 mode="cubic", name="bad_resize")


def _scatter_reduction(b):
    return b.add("ScatterND", [b.input, b.ints([[0, 1]]), b.const(np.ones(1, np.float32))], reduction="add",
                 name="bad_scatter")


def _cast_to_half(b):
    return b.add("Cast", [b.input], to=TensorProto.FLOAT16, name="bad_cast")


def _gather_out_of_range(b):
    return b.add("Gather", [b.input, b.ints([4])], axis=1, name="bad_gather")


MISTAKES = {"range_of_variable": _range_of_variable, "resize_cubic": _resize_cubic,
            "scatter_reduction": _scatter_reduction, "cast_to_half": _cast_to_half,
            "gather_out_of_range": _gather_out_of_range}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistakes_name_the_node(name, tmp_path):
    b = OnnxBuilder([1, 4], rng=np.random.default_rng(0), opset=16)
    y = MISTAKES[name](b)
    path = b.save(tmp_path / f"{name}.onnx", y)
    with pytest.raises(UserError) as error:
        load_onnx(path)
    message = assert_one_line(error)
    assert str(path) in message and "'bad_" in message, message


def test_a_table_whose_shape_changes_is_a_user_error(tmp_path):
    """A slice from an input position keeps a data-dependent length up to the output: the
    loader samples one shape, and evaluation names the node when another appears."""
    b = OnnxBuilder([3], rng=np.random.default_rng(0), opset=13)
    start = b.add("Cast", [b.add("Slice", [b.input, b.ints([0]), b.ints([1])])], to=TensorProto.INT64)
    piece = b.add("Slice", [b.const(np.arange(5, dtype=np.float32)), start, b.ints([5])], name="bad_slice")
    path = b.save(tmp_path / "moving.onnx", b.add("Add", [b.add("Slice", [b.input, b.ints([1]), b.ints([2])]), piece]))
    graph = load_onnx(path).to(torch.float64)
    assert evaluate(graph, torch.zeros(1, 3)).shape == (1, 5)
    with pytest.raises(UserError, match="data-dependent"):
        evaluate(graph, torch.tensor([[2.0, 0.0, 0.0]]))


# --- mutation: the bound checks have teeth ------------------------------------------------------

def _moved_inward(original, line: str):
    """The relaxation with one line moved inward by 5% of the step's range on the interval."""

    def mutant(self, node, l, u):
        a_lo, b_lo, a_up, b_up = original(self, node, l, u)
        shift = 0.05 * (self.fn(u) - self.fn(l))
        return (a_lo, b_lo + shift, a_up, b_up) if line == "lower" else (a_lo, b_lo, a_up, b_up - shift)

    return mutant


def _violations(graph, rng, boxes: int = 6) -> int:
    """Sampled values outside CROWN's bounds (any node, and the output rows), over wide boxes."""
    found = 0
    for _ in range(boxes):
        lo, hi = random_box(rng, graph.input_size, "wide")
        lo, hi = 3 * lo, 3 * hi
        state = crown(graph, torch.as_tensor(lo)[None], torch.as_tensor(hi)[None])
        values = evaluate(graph, torch.as_tensor(sample_box(rng, lo, hi, 10_000)), keep_all=True)
        for node in graph.nodes:
            l, u = state.bounds[node.name]
            found += int(((values[node.name] < l[0] - TOL) | (values[node.name] > u[0] + TOL)).any())
        lower, upper = bounds(graph, (lo, hi), "crown")
        y = values[graph.output_name].flatten(1).numpy()
        found += int((y < lower - TOL).any() or (y > upper + TOL).any())
    return found


@pytest.mark.parametrize("line", ["lower", "upper"])
@pytest.mark.parametrize("name", sorted(STEP_RULES))
def test_a_step_line_moved_inward_is_caught(graphs, monkeypatch, name, line):
    models = [graphs(family, seed)[1] for family in ("step", "binarized") for seed in range(12)]
    models = [g for g in models if any(n.op == name for n in g.nodes)][:3]
    assert models, f"no generated model holds a {name} node"
    rng = np.random.default_rng(0)
    assert sum(_violations(g, rng) for g in models) == 0  # the real rules: nothing to catch
    rule_type = type(RULES[name])
    monkeypatch.setattr(rule_type, "relax", _moved_inward(rule_type.relax, line))
    assert sum(_violations(g, rng) for g in models) > 0, "the mutant went unnoticed"
