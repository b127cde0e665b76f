"""The smooth ops and the products of variables (Exp, Log, Reciprocal, Sqrt, Pow, Sin, Cos,
Mul/Div/MatMul of two variables, ReduceSum, ReduceMean, Softmax): evaluation against
onnxruntime, sound bounds on random graphs (IBP, CROWN, alpha-CROWN, forward mode), their
relaxation lines on dense grids, mutants that move a line inward, and the float32 error rules
against onnxruntime's own outputs."""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from conftest import cached_models
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import onnx_factory as factory
import onnx_math_factory as math_factory
from onnx_factory import one_torch_thread  # noqa: F401  (a fixture)
from onnx_factory import OnnxBuilder, run_onnxruntime
from test_bounds_property import few
from verifier.api import bounds
from verifier.boundprop.engine import backward, crown, ibp
from verifier.boundprop.forward import forward_bounds
from verifier.errors import UserError
from verifier.float_error import output_error
from verifier.graph.evaluate import evaluate
from verifier.graph.ir import Node
from verifier.graph.onnx_loader import load_onnx
from verifier.ops import RULES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAMILIES = sorted(math_factory.FAMILIES)
SEEDS = range(6)
N_SAMPLES = 10_000
WIDTHS = {"zero": 0.0, "tiny": 1e-5, "small": 0.05, "medium": 0.5, "wide": 3.0}
RELATIVE_TOL = 1e-9


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    return cached_models(tmp_path_factory, math_factory.make, "math_models")


def random_box(rng, n: int, width: str, batch: int | None = None):
    shape = (n,) if batch is None else (batch, n)
    centre = rng.normal(size=shape) * rng.choice([0.1, 1.0])
    radius = rng.uniform(0, 1, shape) * WIDTHS[width]
    radius[rng.random(shape) < 0.25] = 0.0
    return centre - radius, centre + radius


def sample_box(rng, lo, hi, n: int) -> np.ndarray:
    corners = np.where(rng.random((min(2 ** lo.size, 512), lo.size)) < 0.5, hi, lo)
    return np.concatenate([lo + (hi - lo) * rng.random((n, lo.size)), corners, [(lo + hi) / 2, lo, hi]])


def assert_within(values, lower, upper, what: str):
    slack = RELATIVE_TOL * (1 + values.abs())
    below = (lower - values - slack).max().item()
    above = (values - upper - slack).max().item()
    assert below <= 0 and above <= 0, f"{what}: a sampled value lies {max(below, above):.3g} outside its bounds"


# --- evaluation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("family", FAMILIES)
def test_matches_onnxruntime(family, seed, tmp_path):
    path = math_factory.make(family, seed, tmp_path)
    shape = factory.input_shape(onnx.load(path))
    x = np.random.default_rng(seed).normal(size=(4, *shape)).astype(np.float32)
    reference = run_onnxruntime(path, x)
    graph = load_onnx(path).to(torch.float64)
    values = evaluate(graph, torch.as_tensor(x, dtype=torch.float64), keep_all=True)
    for node in graph.nodes:
        assert tuple(values[node.name].shape[1:]) == node.shape, f"{node.name} ({node.op})"
    y = values[graph.output_name].numpy()
    assert y.shape == reference.shape
    scale = max(float(np.abs(reference).max()), 1e-6)
    np.testing.assert_allclose(y, reference, rtol=1e-5, atol=1e-5 * scale)


# --- bounds on random graphs -----------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
@few(4)
@given(seed=st.integers(0, 2 ** 32 - 1), width=st.sampled_from(sorted(WIDTHS)))
def test_output_bounds_contain_sampled_outputs(graphs, family, seed, width):
    _, graph = graphs(family, seed % len(SEEDS))
    rng = np.random.default_rng(seed)
    lo, hi = random_box(rng, graph.input_size, width)
    y = evaluate(graph, torch.as_tensor(sample_box(rng, lo, hi, N_SAMPLES))).flatten(1)
    for method in ("ibp", "crown"):
        lower, upper = bounds(graph, (lo, hi), method)
        assert np.isfinite(lower).all() and np.isfinite(upper).all(), method
        assert_within(y, torch.as_tensor(lower), torch.as_tensor(upper), f"{method} output bounds")


@pytest.mark.parametrize("family", FAMILIES)
@few(3)
@given(seed=st.integers(0, 2 ** 32 - 1), width=st.sampled_from(sorted(WIDTHS)))
def test_intermediate_bounds_contain_sampled_values(graphs, family, seed, width):
    _, graph = graphs(family, seed % len(SEEDS))
    rng = np.random.default_rng(seed)
    lo, hi = (torch.as_tensor(side) for side in random_box(rng, graph.input_size, width, batch=2))
    states = {"crown": crown(graph, lo, hi), "alpha-crown": crown(graph, lo, hi, iterations=3),
              "ibp": ibp(graph, lo, hi), "forward": forward_bounds(graph, lo, hi)}
    for b in range(2):
        x = sample_box(rng, lo[b].numpy(), hi[b].numpy(), 2000)
        values = evaluate(graph, torch.as_tensor(x), keep_all=True)
        for method, state in states.items():
            for node in graph.nodes:
                l, u = state.bounds[node.name]
                assert not (torch.isnan(l).any() or torch.isnan(u).any()), (method, node.name)
                assert_within(values[node.name], l[b], u[b], f"{method} bounds of {node.name} ({node.op}), box {b}")


@pytest.mark.parametrize("family", ["exp_log", "power", "products", "attention"])
def test_optimised_output_bounds_are_sound_and_never_looser(graphs, family):
    """alpha-CROWN over the smooth ops' tangent points and the McCormick mixes."""
    from verifier.boundprop.optimize import Spec, optimize_bounds

    _, graph = graphs(family, 1)
    rng = np.random.default_rng(5)
    lo, hi = (torch.as_tensor(side) for side in random_box(rng, graph.input_size, "medium", batch=2))
    state = crown(graph, lo, hi)
    spec = Spec(torch.as_tensor(rng.normal(size=(3, graph.output_size))), torch.full((3,), 1e9), torch.arange(3), 3)
    plain, _, _ = optimize_bounds(state, spec, 0)
    tuned, _, _ = optimize_bounds(state, spec, 20)
    assert (tuned >= plain - 1e-12).all()
    for b in range(2):
        y = evaluate(graph, torch.as_tensor(sample_box(rng, lo[b].numpy(), hi[b].numpy(), 5000))).flatten(1)
        assert (tuned[b] <= (y @ spec.C.T).min(0).values + 1e-9).all()


# --- the relaxation lines of each smooth op ---------------------------------------------------------

def _smooth_cases():
    cases = [("exp", {}), ("log", {}), ("reciprocal", {}), ("sqrt", {}), ("sin", {}), ("cos", {})]
    cases += [("pow", {"exponent": p}) for p in (2.0, 3.0, 4.0, 5.0, -1.0, -2.0, -3.0, 0.5, 1.5, 2.5, -0.5)]
    return cases


def intervals(rng, n: int, op: str):
    """Intervals of every width, inside the op's domain and not."""
    centre = rng.normal(size=n) * rng.choice([0.1, 1.0, 5.0, 30.0], size=n)
    width = rng.choice([0.0, 1e-12, 1e-8, 1e-4, 1e-2, 1.0, 10.0, 100.0], size=n) * rng.random(n)
    fixed = np.array([[-1e-7, 1e-7], [-5, 5], [0, 0], [0, 4], [-4, 0], [-60, 60], [3, 50], [-50, -3],
                      [1e-9, 2e-9], [5.0, 5.0 + 1e-6], [0.5, 700], [-3.2, 3.2], [1.5, 1.6], [-1e3, 1e3 + 7]])
    lo = np.concatenate([centre - width / 2, fixed[:, 0]])
    hi = np.concatenate([centre + width / 2, fixed[:, 1]])
    if op in ("log", "sqrt") or op == "pow":
        lo, hi = np.where(rng.random(lo.size) < 0.8, np.abs(lo), lo), np.where(rng.random(lo.size) < 0.8, np.abs(hi), hi)
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    return torch.as_tensor(lo), torch.as_tensor(hi)


def _grid(l, u, points):
    t = torch.linspace(0, 1, points, dtype=torch.float64)
    return torch.minimum(l.unsqueeze(-1) + (u - l).unsqueeze(-1) * t, u.unsqueeze(-1))


def assert_lines_hold(f, l, u, a_lo, b_lo, a_up, b_up, points=2001):
    xs = _grid(l, u, points)
    with np.errstate(all="ignore"):
        fx = f(xs)
    defined = torch.isfinite(fx)
    slack = 1e-12 * (1 + fx.abs() + (a_lo.abs() + a_up.abs()).unsqueeze(-1) * xs.abs())
    lower = a_lo.unsqueeze(-1) * xs + b_lo.unsqueeze(-1)
    upper = a_up.unsqueeze(-1) * xs + b_up.unsqueeze(-1)
    below = torch.where(defined, lower - fx - slack, -1.0).amax(-1)
    above = torch.where(defined, fx - upper - slack, -1.0).amax(-1)
    worst = int(torch.maximum(below, above).argmax())
    assert max(below[worst], above[worst]) <= 0, (
        f"line off by {max(below[worst], above[worst]):.3g} on [{l[worst].item()!r}, {u[worst].item()!r}]")


@pytest.mark.parametrize("op, attrs", _smooth_cases(), ids=lambda v: str(v))
def test_smooth_lines_hold_on_dense_grids(op, attrs):
    """The CROWN lines, and lines from random alpha (tangent points, slopes), hold everywhere
    on [l, u] where f is defined; IBP bounds contain the grid."""
    rule, node = RULES[op], Node("y", op, ["x"], (), attrs=attrs)
    l, u = intervals(np.random.default_rng(0), 600, op)
    f = lambda x: rule.fn(node, x)  # noqa: E731
    lines = rule.relax(node, l, u)
    assert all(t.shape == l.shape and not torch.isnan(t).any() for t in lines)
    assert_lines_hold(f, l, u, *lines)
    alpha = torch.rand(*l.shape, 2, dtype=torch.float64)
    assert_lines_hold(f, l, u, *rule._lines(node, l, u, alpha))
    low, high = rule.ibp(node, (l, u))
    xs = _grid(l, u, 2001)
    fx = f(xs)
    defined = torch.isfinite(fx)
    fx, slack = torch.where(defined, fx, 0.0), 1e-12 * (1 + torch.where(defined, fx, 0.0).abs())
    assert (~defined | (fx <= high.unsqueeze(-1) + slack)).all()
    assert (~defined | (fx >= low.unsqueeze(-1) - slack)).all()


@pytest.mark.parametrize("op", ["sin", "cos"])
@settings(deadline=None, max_examples=200, derandomize=True, database=None)
@given(lo=st.floats(-1e4, 1e4), width=st.one_of(st.floats(0, 1e-6), st.floats(0, 4), st.floats(0, 40)),
       alpha=st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_trig_lines_on_one_interval(op, lo, width, alpha):
    rule, node = RULES[op], Node("y", op, ["x"], ())
    l = torch.tensor([lo], dtype=torch.float64)
    u = l + width
    f = lambda x: rule.fn(node, x)  # noqa: E731
    assert_lines_hold(f, l, u, *rule.relax(node, l, u), points=40001)
    assert_lines_hold(f, l, u, *rule._lines(node, l, u, torch.tensor([alpha], dtype=torch.float64)), points=40001)


def test_trig_lines_are_tight_on_narrow_intervals():
    """On an interval of width w the gap between the lines is O(w^2), as for a chord and a
    tangent."""
    rule, node = RULES["sin"], Node("y", "sin", ["x"], ())
    l = torch.linspace(-10, 10, 401, dtype=torch.float64)
    for w in (1e-2, 1e-3):
        a_lo, b_lo, a_up, b_up = rule.relax(node, l, l + w)
        xs = _grid(l, l + w, 101)
        gap = ((a_up - a_lo).unsqueeze(-1) * xs + (b_up - b_lo).unsqueeze(-1)).amax(-1)
        assert gap.max() <= w * w / 2 + 1e-12


@pytest.mark.parametrize("mix", [(0.0, 0.0), (1.0, 1.0), (0.5, 0.5), (0.2, 0.9)])
def test_mccormick_planes_hold(mix):
    rng = np.random.default_rng(1)
    n = 2000
    lx = torch.as_tensor(rng.normal(size=n) * 3)
    ly = torch.as_tensor(rng.normal(size=n) * 3)
    ux, uy = lx + torch.as_tensor(rng.random(n) * 4), ly + torch.as_tensor(rng.random(n) * 4)
    lo_ax, lo_ay, lo_c, up_ax, up_ay, up_c = RULES["mul"]._planes(lx, ux, ly, uy, *mix)
    t = torch.as_tensor(rng.random((n, 400)))
    s = torch.as_tensor(rng.random((n, 400)))
    x, y = lx[:, None] + (ux - lx)[:, None] * t, ly[:, None] + (uy - ly)[:, None] * s
    xy = x * y
    assert (lo_ax[:, None] * x + lo_ay[:, None] * y + lo_c[:, None] <= xy + 1e-12).all()
    assert (up_ax[:, None] * x + up_ay[:, None] * y + up_c[:, None] >= xy - 1e-12).all()


# --- mutants: a line moved 5% inward is caught ---------------------------------------------------

def _caught(graph, lo, hi, rng) -> bool:
    """Does a sampled value of some node leave its CROWN bounds?"""
    state = crown(graph, torch.as_tensor(lo)[None], torch.as_tensor(hi)[None])
    values = evaluate(graph, torch.as_tensor(sample_box(rng, lo, hi, N_SAMPLES)), keep_all=True)
    for node in graph.nodes:
        l, u = state.bounds[node.name]
        v = values[node.name]
        if (v < l[0] - 1e-9 * (1 + v.abs())).any() or (v > u[0] + 1e-9 * (1 + v.abs())).any():
            return True
    C = torch.eye(graph.output_size, dtype=torch.float64)
    lower = backward(state, graph.output_name, torch.cat([C, -C])[None].reshape(1, -1, *graph.output_shape))
    y = values[graph.output_name].flatten(1)
    return bool((lower[0, :graph.output_size] > y.min(0).values + 1e-9).any()
                or (-lower[0, graph.output_size:] < y.max(0).values - 1e-9).any())


MUTANT_FAMILIES = {"exp": "exp_log", "log": "exp_log", "pow": "power", "sin": "trig", "cos": "trig",
                   "mul": "products", "matmul_variables": "attention"}


@pytest.mark.parametrize("op", sorted(MUTANT_FAMILIES))
@pytest.mark.parametrize("side", ["lower", "upper"])
def test_line_moved_inward_is_caught(graphs, op, side, monkeypatch):
    """Each relaxation's lower (upper) intercept raised (lowered) by 5% of the node's output
    range: sampling must find a value outside the bounds on one of a few boxes."""
    rule = RULES[op]
    original = type(rule).backward

    def mutant(self, node, lam, state, alpha=None):
        lam_inputs, bias = original(self, node, lam, state, alpha)
        if node.op != op:
            return lam_inputs, bias
        low, high = self.ibp(node, *(state.bounds[name] for name in node.inputs))
        spread = (high - low).clamp(max=1e6).unsqueeze(1)
        moved = lam.clamp(min=0) if side == "lower" else lam.clamp(max=0)
        return lam_inputs, bias + 0.05 * (moved.abs() * spread).flatten(2).sum(-1)

    monkeypatch.setattr(type(rule), "backward", mutant)
    rng = np.random.default_rng(0)
    for seed in SEEDS:
        _, graph = graphs(MUTANT_FAMILIES[op], seed)
        if not any(n.op == op for n in graph.nodes):
            continue
        for width in ("small", "medium"):
            lo, hi = random_box(rng, graph.input_size, width)
            if _caught(graph, lo, hi, rng):
                return
    pytest.fail(f"moving the {side} lines of {op} inward went unnoticed")


def test_unmutated_rules_are_not_caught(graphs):
    """The mutants' detector on the real rules: never a false alarm."""
    rng = np.random.default_rng(0)
    for family in sorted(set(MUTANT_FAMILIES.values())):
        for seed in SEEDS[:3]:
            _, graph = graphs(family, seed)
            for width in ("small", "medium"):
                assert not _caught(graph, *random_box(rng, graph.input_size, width), rng), (family, seed)


# --- float32 error against onnxruntime ---------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_float_error_bounds_onnxruntime(graphs, family):
    """|onnxruntime's output - the exact (float64) network| <= the error bound, on points of
    random boxes."""
    rng = np.random.default_rng(3)
    for seed in SEEDS[:3]:
        path, graph = graphs(family, seed)
        for width in ("small", "wide"):
            lo, hi = random_box(rng, graph.input_size, width)
            lo, hi = lo.astype(np.float32).astype(np.float64), hi.astype(np.float32).astype(np.float64)
            lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
            error, _ = output_error(graph, lo, hi)
            x = sample_box(rng, lo, hi, 300).astype(np.float32)
            x = np.clip(x, lo, hi).astype(np.float32)
            exact = evaluate(graph, torch.as_tensor(x.astype(np.float64))).reshape(len(x), -1).numpy()
            ort = run_onnxruntime(path, x.reshape(len(x), *factory.input_shape(onnx.load(path))))
            assert (np.abs(ort.reshape(len(x), -1) - exact) <= error).all(), (family, seed, width)


def _one_op_model(op, attrs=None, extra=None, opset=13):
    b = OnnxBuilder([1, 64], opset=opset)
    inputs = [b.input] + ([b.const(np.float32(extra))] if extra is not None else [])
    return b, b.add(op, inputs, **(attrs or {}))


@pytest.mark.parametrize("op, exponent, lo, hi", [
    ("Exp", None, -80.0, 80.0), ("Exp", None, -0.1, 0.1), ("Log", None, 1e-3, 1e3), ("Log", None, 0.9, 1.1),
    ("Sqrt", None, 1e-3, 4.0), ("Reciprocal", None, 0.01, 100.0), ("Reciprocal", None, -5.0, -0.2),
    ("Sin", None, -1e4, 1e4), ("Cos", None, -3.0, 3.0), ("Pow", 3.0, -10.0, 10.0), ("Pow", 0.5, 1e-3, 9.0),
    ("Pow", -2.0, 0.1, 10.0), ("Softmax", None, -30.0, 30.0)])
def test_single_op_float_error_on_dense_points(tmp_path, op, exponent, lo, hi):
    """Each rule's bound holds for onnxruntime on 64 x 2000 points of one box, and is not
    absurdly loose (within a factor 1e4 of the worst error seen, or below 1e-5) where the box
    spans less than a factor 100 (the input's rounding error is bounded box-wide, |x| u, which
    the derivative 1 / x of log and 1 / x^2 of 1 / x magnify at the box's small end)."""
    b, y = _one_op_model(op, extra=exponent)
    path = b.save(tmp_path / f"{op}.onnx", y)
    graph = load_onnx(path).to(torch.float64)
    box_lo, box_hi = np.full(64, lo), np.full(64, hi)
    error, _ = output_error(graph, box_lo, box_hi)
    rng = np.random.default_rng(0)
    x = rng.uniform(lo, hi, size=(2000, 1, 64)).astype(np.float32)
    x = np.clip(x, lo, hi).astype(np.float32)
    ort = run_onnxruntime(path, x).reshape(2000, -1)
    exact = evaluate(graph, torch.as_tensor(x.astype(np.float64))).reshape(2000, -1).numpy()
    seen = np.abs(ort - exact)
    assert (seen <= error).all()
    if lo <= 0 or hi / lo < 100:
        assert error.max() <= max(1e4 * seen.max(), 1e-5)


def test_float_error_is_infinite_outside_the_domain():
    graph_nodes = {"log": (-1.0, 1.0), "sqrt": (-1e-3, 1.0), "reciprocal": (-1.0, 1.0), "exp": (80.0, 100.0)}
    for op, (lo, hi) in graph_nodes.items():
        rule, node = RULES[op], Node("y", op, ["x"], (1,))
        l, u = torch.tensor([[lo]], dtype=torch.float64), torch.tensor([[hi]], dtype=torch.float64)
        e = rule.float_error(node, [torch.zeros_like(l)], [torch.maximum(l.abs(), u.abs())], [(l, u)])
        assert torch.isinf(e).all(), op


# --- loader ---------------------------------------------------------------------------------------

def test_pow_variants_load_as_expected(tmp_path):
    for exponent, ops in [(1.0, []), (0.0, ["affine"]), (2.0, ["pow"]), (0.5, ["pow"])]:
        b, y = _one_op_model("Pow", extra=exponent)
        graph = load_onnx(b.save(tmp_path / f"pow{exponent}.onnx", b.add("Relu", [y])))
        assert [n.op for n in graph.nodes] == ops + ["relu"], exponent


@pytest.mark.parametrize("build, message", [
    (lambda b: b.add("Pow", [b.input, b.add("Relu", [b.input])]), "variable exponent"),
    (lambda b: b.add("Pow", [b.input, b.const(np.array([2.0, 3.0] * 32, np.float32))]), "differs across"),
])
def test_unsupported_forms_name_the_node(tmp_path, build, message):
    b = OnnxBuilder([1, 64])
    path = b.save(tmp_path / "bad.onnx", build(b))
    with pytest.raises(UserError) as error:
        load_onnx(path)
    assert message in str(error.value) and "\n" not in str(error.value) and "Pow" in str(error.value)


def test_softmax_keeps_its_execution_node(tmp_path):
    """Bound propagation sees the expansion, the float32 error analysis onnxruntime's softmax."""
    b, y = _one_op_model("Softmax", attrs={"axis": -1})
    graph = load_onnx(b.save(tmp_path / "softmax.onnx", y))
    assert "softmax" not in [n.op for n in graph.nodes]
    assert [n.op for n in graph.execution().nodes] == ["softmax"]
    assert math.isclose(float(evaluate(graph.to(torch.float64), torch.zeros(1, 64, dtype=torch.float64))[0, 0, 0]),
                        1 / 64)


# --- verdicts against a grid ------------------------------------------------------------------------

def _smooth_net(path, seed: int, softmax: bool):
    """2 inputs -> sin(W1 x) * cos(W2 x) -> W3 (-> softmax, first output), and a Lipschitz
    constant in the infinity norm: |sin|, |cos| <= 1 and both are 1-Lipschitz; softmax's
    outputs move by at most half the largest change of its logits."""
    rng = np.random.default_rng(seed)
    b = OnnxBuilder([1, 2], rng=rng)
    W1, W2 = rng.normal(size=(2, 6)) * 1.5, rng.normal(size=(2, 6)) * 1.5
    n_out = 3 if softmax else 1
    W3 = rng.normal(size=(6, n_out))
    s = b.add("Sin", [b.add("MatMul", [b.input, b.const(W1)])])
    c = b.add("Cos", [b.add("MatMul", [b.input, b.const(W2)])])
    y = b.add("MatMul", [b.add("Mul", [s, c]), b.const(W3)])
    per_unit = np.abs(W1).sum(0) + np.abs(W2).sum(0)
    lipschitz = float((np.abs(W3) * per_unit[:, None]).sum(0).max())
    if softmax:
        y, lipschitz = b.add("Softmax", [y], axis=-1), lipschitz / 2
    return b.save(path, y), lipschitz


@pytest.mark.parametrize("softmax", [False, True], ids=["sin_cos_mul", "softmax"])
def test_smooth_nets_verify_against_a_grid(softmax, tmp_path):
    """Just below the grid's maximum of the first output is sat (the witness replays in
    onnxruntime); above it by the Lipschitz slack, unsat."""
    import verifier

    onnx_path, lipschitz = _smooth_net(tmp_path / "smooth.onnx", 0, softmax)
    axis = np.linspace(-1.0, 1.0, 301)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 1, 2).astype(np.float32)
    top = float(run_onnxruntime(onnx_path, grid).reshape(len(grid), -1)[:, 0].max())
    slack = lipschitz * (axis[1] - axis[0]) / 2
    box = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))\n" for i in range(2))
    outputs = "".join(f"(declare-const Y_{i} Real)\n" for i in range(3 if softmax else 1))
    for threshold, expected in [(top - 0.01, "sat"), (top + slack + 1e-3, "unsat")]:
        spec = tmp_path / f"{expected}.vnnlib"
        spec.write_text(box + outputs + f"(assert (>= Y_0 {float(threshold)!r}))\n")
        result = verifier.verify(onnx_path, spec, timeout=60)
        assert result.verdict == expected, (threshold, result.stage)
        if expected == "sat":
            y = run_onnxruntime(onnx_path, np.asarray(result.witness.x, np.float32).reshape(1, 1, 2))
            assert y.reshape(-1)[0] >= threshold


@pytest.mark.parametrize("op, attrs", _smooth_cases(), ids=lambda v: str(v))
def test_infinite_and_out_of_domain_intervals_give_no_nan(op, attrs):
    """Infinite ends, intervals leaving the domain and overflowing values: IBP and lines are
    NaN-free, the lines constant at the interval bounds, which hold at finite sample points."""
    inf = float("inf")
    rule, node = RULES[op], Node("y", op, ["x"], (), attrs=attrs)
    l = torch.tensor([-inf, -inf, 1.0, -1.0, 0.5, 800.0, -5.0, 0.0], dtype=torch.float64)
    u = torch.tensor([inf, -2.0, inf, 1.0, 1e300, 900.0, -1.0, 0.0], dtype=torch.float64)
    low, high = rule.ibp(node, (l, u))
    lines = rule.relax(node, l, u)
    assert not any(torch.isnan(t).any() for t in (low, high, *lines))
    points = torch.stack([torch.where(torch.isfinite(l), l, torch.where(torch.isfinite(u), u - 7.0, 3.0)),
                          torch.where(torch.isfinite(u), u, l + 7.0)]).clamp(-1e300, 1e300)
    with np.errstate(all="ignore"):
        fx = rule.fn(node, points)
    defined = torch.isfinite(fx)
    assert (~defined | ((fx >= low - 1e-9 * fx.abs()) & (fx <= high + 1e-9 * fx.abs()))).all()


@pytest.mark.parametrize("scale", [1e3, 1e5, 1e7])
def test_relu_error_bound_holds_on_cancelling_nets(tmp_path, scale):
    """ReLU's error stops at neurons whose float32 input stays negative: the bound must still
    hold for onnxruntime on nets whose hidden values are large and cancel, many of whose
    neurons sit just below 0 (their errors would flip them if the rule were wrong)."""
    rng = np.random.default_rng(int(scale))
    for trial in range(3):
        b = OnnxBuilder([1, 3], rng=rng)
        W1 = rng.normal(size=(3, 16))
        b1 = -np.abs(rng.normal(size=16)) * scale - 2.5  # most neurons just below 0 on the box
        h = b.add("Relu", [b.add("Gemm", [b.input, b.const(W1), b.const(b1 + scale)])])
        h = b.add("Gemm", [h, b.const(rng.normal(size=(16, 8))), b.const(rng.normal(size=8) * scale)])
        y = b.add("Gemm", [b.add("Relu", [h]), b.const(rng.normal(size=(8, 2))), b.const(np.zeros(2))])
        path = b.save(tmp_path / f"cancel{trial}.onnx", y)
        graph = load_onnx(path).to(torch.float64)
        lo, hi = -np.ones(3), np.ones(3)
        error, _ = output_error(graph, lo, hi)
        x = rng.uniform(-1, 1, size=(3000, 1, 3)).astype(np.float32)
        ort = run_onnxruntime(path, x).reshape(3000, -1)
        exact = evaluate(graph, torch.as_tensor(x.astype(np.float64))).reshape(3000, -1).numpy()
        assert (np.abs(ort - exact) <= error).all(), (scale, trial)


def _saturating_softmax_net(path):
    """4 inputs; class 1 wins only within 0.02 (l1 distance) of c = (0.3, 0.7, 0.4, 0.6),
    by logits that differ by up to a thousand elsewhere: the softmax saturates (and exp
    overflows in float32), so its gradients vanish or are NaN."""
    b = OnnxBuilder([1, 4])
    distance = b.add("MatMul", [b.add("Abs", [b.add("Sub", [b.input, b.const(np.array([[0.3, 0.7, 0.4, 0.6]]))])]),
                                b.const(np.ones((4, 1)))])
    logits = b.add("Gemm", [distance, b.const(np.array([[1000.0, -1000.0]])), b.const(np.array([-20.0, 20.0]))])
    return b.save(path, b.add("Softmax", [logits], axis=-1))


def test_attacks_search_the_logits_of_a_final_softmax(tmp_path):
    """Comparisons of two outputs are searched on the logits, thresholds on the outputs."""
    import verifier
    from verifier.options import Options
    from verifier.pipeline import Query, _attack_graph
    from verifier.spec.vnnlib import parse_vnnlib

    path = _saturating_softmax_net(tmp_path / "saturating.onnx")
    box = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n" for i in range(4))
    outputs = "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    compare, threshold = tmp_path / "compare.vnnlib", tmp_path / "threshold.vnnlib"
    compare.write_text(box + outputs + "(assert (>= Y_1 Y_0))\n")
    threshold.write_text(box + outputs + "(assert (>= Y_1 0.9))\n")
    graph = load_onnx(path)
    query = Query(graph, [], None, Options(), 0.0)
    for spec, searched in [(compare, "logits"), (threshold, "outputs")]:
        region = parse_vnnlib(spec, n_inputs=4, n_outputs=2)[0]
        attacked = _attack_graph(query, region)
        assert (attacked.output_name != graph.output_name) == (searched == "logits")
    result = verifier.verify(path, compare, timeout=30)
    assert result.verdict == "sat", result.stage
    y = run_onnxruntime(path, np.asarray(result.witness.x, np.float32).reshape(1, 1, 4)).reshape(-1)
    assert y[1] >= y[0]


def test_affine_ibp_with_infinite_input_bounds():
    """An infinite end makes an output bound infinite only where it enters with the sign that
    can reach it; the finite rest is as usual, and sampled points stay inside."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(6, 5)) * (rng.random((6, 5)) < 0.6)
    node = Node("y", "matmul", ["x"], (5,), tensors={"W": torch.as_tensor(W)})
    rule = RULES["matmul"]
    inf = float("inf")
    l = torch.as_tensor(rng.normal(size=(50, 6)) - 1)
    u = l + torch.as_tensor(rng.random((50, 6)) * 2)
    l = torch.where(torch.as_tensor(rng.random((50, 6)) < 0.15), -inf, l)
    u = torch.where(torch.as_tensor(rng.random((50, 6)) < 0.15), inf, u)
    lower, upper = rule.ibp(node, (l, u))
    assert not (torch.isnan(lower).any() or torch.isnan(upper).any())
    assert torch.isfinite(lower).any() and torch.isinf(lower).any()
    finite_l, finite_u = torch.where(torch.isinf(l), u - 1e6, l), torch.where(torch.isinf(u), l + 1e6, u)
    finite_l = torch.where(torch.isinf(finite_l), -1e6, finite_l)
    finite_u = torch.where(torch.isinf(finite_u), 1e6, finite_u)
    t = torch.as_tensor(rng.random((2000, 50, 6)))
    y = (finite_l + (finite_u - finite_l) * t) @ torch.as_tensor(W)
    assert ((y >= lower - 1e-6) & (y <= upper + 1e-6)).all()
    expected_lower = torch.where(torch.as_tensor(W) > 0, l.unsqueeze(-1), u.unsqueeze(-1)) * torch.as_tensor(W)
    expected_lower = torch.where(torch.as_tensor(W) == 0, 0.0, expected_lower).sum(1)
    assert torch.equal(torch.isinf(lower), torch.isinf(expected_lower))


@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_unbounded_factors_give_infinite_bounds_not_nan(method, tmp_path):
    """A product of variables with an unbounded factor (1/x over a box around 0, as in
    cctsdb_yolo's normalisation) has an infinite float32 rounding bound; 0 * inf in the rule
    or in the backward pass must not turn the bounds into NaN (a NaN compares False with every
    threshold, so it looked like no bound and printed as nan). The scalar output node with a
    one-element shift is cctsdb_yolo's shape as well."""
    b = OnnxBuilder([2])
    x = b.add("Slice", [b.input, b.const(np.array([0])), b.const(np.array([1]))])
    w = b.add("Slice", [b.input, b.const(np.array([1])), b.const(np.array([2]))])
    product = b.add("Mul", [b.add("Reciprocal", [x]), w])
    y = b.add("Add", [b.add("Squeeze", [b.add("Mul", [product, b.const(np.zeros(1, dtype=np.float32))])]),
                      b.const(np.array([0.5], dtype=np.float32))])
    path = factory.save(b.model(y), tmp_path / "unbounded.onnx")
    lower, upper = bounds(path, (np.array([-1.0, 1.0]), np.array([1.0, 2.0])), method=method)
    assert not np.isnan(lower).any() and not np.isnan(upper).any()
    assert (lower <= 0.5).all() and (upper >= 0.5).all()
