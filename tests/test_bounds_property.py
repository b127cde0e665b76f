"""Soundness of the bounds on random small graphs: every sampled output (and every intermediate
value) lies within the computed bounds, for IBP, CROWN and forward-mode linear bounds; CROWN is
exact on affine graphs; the Sigmoid/Tanh/ReLU linear relaxations hold on a dense grid."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import cached_models
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onnx_factory as factory
from onnx_factory import one_torch_thread  # noqa: F401  (a fixture)
from verifier.api import bounds
from verifier.boundprop.engine import crown, ibp
from verifier.boundprop.forward import forward_bounds
from verifier.float_error import real_valued_network
from verifier.graph.evaluate import evaluate
from verifier.ops import RULES
from verifier.ops.activation import Sigmoid, Tanh, relu_relaxation, upper_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOL = 1e-9
N_SAMPLES = 10_000
MODEL_SEEDS = 6  # distinct random models per family; hypothesis picks among them
WIDTHS = {"zero": 0.0, "tiny": 1e-5, "small": 0.05, "medium": 0.5, "wide": 5.0, "huge": 50.0}



def few(n: int):
    """Hypothesis settings for n examples (deterministic, so the suite's time is known)."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """(family, seed) -> Graph in float64, built once per module."""
    get = cached_models(tmp_path_factory, factory.make, "models")
    return lambda family, seed: get(family, seed)[1]


def random_box(rng, n: int, width: str, batch: int | None = None):
    """A box with a random centre and random widths, about a quarter of them zero."""
    shape = (n,) if batch is None else (batch, n)
    centre = rng.normal(size=shape) * rng.choice([0.1, 1.0, 3.0])
    radius = rng.uniform(0, 1, shape) * WIDTHS[width]
    radius[rng.random(shape) < 0.25] = 0.0
    return centre - radius, centre + radius


def sample_box(rng, lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    """n uniform points, the corners (all, or 2000 random ones), the centre and both ends."""
    dim = lo.size
    uniform = lo + (hi - lo) * rng.random((n, dim))
    if dim <= 11:
        bits = (np.arange(2 ** dim)[:, None] >> np.arange(dim)) & 1
    else:
        bits = rng.random((2000, dim)) < 0.5
    corners = np.where(bits.astype(bool), hi, lo)
    return np.concatenate([uniform, corners, [(lo + hi) / 2, lo, hi]])


def assert_within(values: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, what: str):
    below = (lower - values).max().item()
    above = (values - upper).max().item()
    assert below <= TOL and above <= TOL, (
        f"{what}: a sampled value lies {max(below, above):.3g} outside its bounds")


# --- output bounds through the API ---------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(factory.ALL))
@few(4)
@given(seed=st.integers(0, 2 ** 32 - 1), width=st.sampled_from(sorted(WIDTHS)))
def test_output_bounds_are_sound(graphs, family, seed, width):
    graph = graphs(family, seed % MODEL_SEEDS)
    rng = np.random.default_rng(seed)
    lo, hi = random_box(rng, graph.input_size, width)
    y = evaluate(graph, torch.as_tensor(sample_box(rng, lo, hi, N_SAMPLES))).flatten(1)
    lowers, uppers = [], []
    for method in ("ibp", "crown"):
        lower, upper = bounds(graph, (lo, hi), method)
        assert lower.shape == upper.shape == (graph.output_size,)
        assert np.isfinite(lower).all() and np.isfinite(upper).all()
        assert_within(y, torch.as_tensor(lower), torch.as_tensor(upper), f"{method} output bounds")
        lowers.append(lower)
        uppers.append(upper)
    # both sound, so they overlap (neither dominates the other for every op)
    assert (np.maximum(*lowers) <= np.minimum(*uppers) + TOL).all()


# --- every intermediate bound, with several boxes at once ----------------------------------------

@pytest.mark.parametrize("family", sorted(factory.ALL))
@few(3)
@given(seed=st.integers(0, 2 ** 32 - 1), width=st.sampled_from(sorted(WIDTHS)))
def test_intermediate_bounds_are_sound(graphs, family, seed, width):
    graph = graphs(family, seed % MODEL_SEEDS)
    rng = np.random.default_rng(seed)
    lo, hi = random_box(rng, graph.input_size, width, batch=2)
    states = {"crown": crown(graph, torch.as_tensor(lo), torch.as_tensor(hi)),
              # slopes searched in float32, bounds recomputed in float64 with them
              "alpha-crown": crown(graph, torch.as_tensor(lo), torch.as_tensor(hi), iterations=3),
              "ibp": ibp(graph, torch.as_tensor(lo), torch.as_tensor(hi)),
              "forward": forward_bounds(graph, torch.as_tensor(lo), torch.as_tensor(hi))}
    for b in range(2):
        values = evaluate(graph, torch.as_tensor(sample_box(rng, lo[b], hi[b], 2000)), keep_all=True)
        for method, state in states.items():
            for node in graph.nodes:
                l, u = state.bounds[node.name]
                assert l.shape == u.shape == (2, *node.shape) and l.dtype == u.dtype == torch.float64
                assert_within(values[node.name], l[b], u[b],
                              f"{method} bounds of {node.name} ({node.op}), box {b}")


@pytest.mark.parametrize("family", ["residual_conv", "conv_bn_pool_dense", "avgpool_net"])
def test_alpha_on_open_boxes_is_sound_and_never_looser(graphs, family):
    """Input split's alpha-CROWN steps on the boxes CROWN leaves open: each box's new bound
    is at least its CROWN bound and still below every sampled output."""
    from types import SimpleNamespace

    from verifier.bab.input_split import bound_boxes, optimize_open_boxes
    from verifier.boundprop.optimize import Spec
    from verifier.decide import refuted_disjuncts

    graph = graphs(family, 0)
    rng = np.random.default_rng(2)
    lo, hi = random_box(rng, graph.input_size, "wide", batch=4)
    lo, hi = torch.as_tensor(lo), torch.as_tensor(hi)
    m = 3
    spec = Spec(torch.as_tensor(rng.normal(size=(m, graph.output_size))), torch.full((m,), 1e9),
                torch.arange(m), m)  # thresholds no bound beats: every box stays open
    query = SimpleNamespace(refuted=lambda lower, s: refuted_disjuncts(lower, s.d, torch.zeros_like(s.d), s.owner,
                                                                       s.n_disjuncts), recorder=None)
    lower, lam, state = bound_boxes(graph, lo, hi, spec)
    better, _, _ = optimize_open_boxes(query, spec, state, lower, lam, query.refuted(lower, spec))
    assert (better >= lower).all()
    assert (better > lower + 1e-6).any(), "alpha steps improved no bound"
    for b in range(len(lo)):
        y = evaluate(graph, torch.as_tensor(sample_box(rng, lo[b].numpy(), hi[b].numpy(), 2000))).flatten(1)
        assert (better[b] <= (y @ spec.C.T).min(0).values + TOL).all()


@pytest.mark.parametrize("family", ["residual_conv", "conv_bn_pool_dense", "avgpool_net", "sigmoid_tanh_mlp"])
def test_halves_inheriting_parent_bounds_stay_sound_and_tighter(graphs, family):
    """Input split passes a box's intermediate bounds on to its halves: their bounds must hold
    on samples of each half and be at least as tight as the parent's. (Not always as tight as
    their own: an adaptive or tangent relaxation on a narrower interval can be looser.)"""
    from verifier.bab.input_split import bisect, bound_boxes
    from verifier.boundprop.engine import needs_tight_bounds
    from verifier.boundprop.optimize import Spec

    graph = graphs(family, 0)
    rng = np.random.default_rng(3)
    lo, hi = (torch.as_tensor(side) for side in random_box(rng, graph.input_size, "wide", batch=3))
    spec = Spec(torch.as_tensor(rng.normal(size=(2, graph.output_size))), torch.zeros(2), torch.arange(2), 2)
    _, _, parent = bound_boxes(graph, lo, hi, spec)
    tight = needs_tight_bounds(graph)
    dims = torch.as_tensor(rng.integers(graph.input_size, size=3))
    half_lo, half_hi = bisect(lo, hi, dims)
    known = {k: (torch.cat([l, l]), torch.cat([u, u])) for k, (l, u) in parent.bounds.items() if k in tight}
    lower, _, inherited = bound_boxes(graph, half_lo, half_hi, spec, known=known)
    for name, (l, u) in known.items():
        new_l, new_u = inherited.bounds[name]
        assert (new_l >= l).all() and (new_u <= u).all()
    for b in range(len(half_lo)):
        x = sample_box(rng, half_lo[b].numpy(), half_hi[b].numpy(), 2000)
        values = evaluate(graph, torch.as_tensor(x), keep_all=True)
        for name in known:
            assert_within(values[name], *(t[b] for t in inherited.bounds[name]), f"inherited bounds of {name}")
        y = values[graph.output_name].flatten(1)
        assert (lower[b] <= (y @ spec.C.T).min(0).values + TOL).all()


@pytest.mark.parametrize("family", sorted(factory.ALL))
def test_pairwise_tightening_matches_rowwise(graphs, family, monkeypatch):
    """Boxes of very different widths have different unstable neurons. Bounding each (box,
    neuron) pair that needs it alone must be sound, and give the rowwise CROWN bounds wherever
    a relaxation depends on them (stable neurons may keep their looser IBP bounds)."""
    from verifier.boundprop import engine

    graph = graphs(family, 0)
    rng = np.random.default_rng(1)
    boxes = [random_box(rng, graph.input_size, w) for w in ("tiny", "small", "medium", "wide")]
    lo, hi = (np.stack(side) for side in zip(*boxes))
    monkeypatch.setattr(engine, "_PAIR_FRACTION", 0.0)
    rowwise = crown(graph, torch.as_tensor(lo), torch.as_tensor(hi)).bounds
    monkeypatch.setattr(engine, "_PAIR_FRACTION", 2.0)
    pairwise = crown(graph, torch.as_tensor(lo), torch.as_tensor(hi)).bounds
    for b in range(len(lo)):
        values = evaluate(graph, torch.as_tensor(sample_box(rng, lo[b], hi[b], 2000)), keep_all=True)
        for node in graph.nodes:
            l, u = pairwise[node.name]
            assert_within(values[node.name], l[b], u[b], f"pairwise bounds of {node.name}, box {b}")
    for name, tight_only_unstable in engine.needs_tight_bounds(graph).items():
        (l, u), (pl, pu) = rowwise[name], pairwise[name]
        relaxed = (l < 0) & (u > 0) if tight_only_unstable else torch.ones_like(l, dtype=torch.bool)
        # equal but for the float32 rounding charged, which scales with magnitudes that differ
        # where stable neurons kept looser bounds
        assert torch.allclose(l[relaxed], pl[relaxed], rtol=1e-6, atol=1e-6), (name, (l - pl)[relaxed].abs().max())
        assert torch.allclose(u[relaxed], pu[relaxed], rtol=1e-6, atol=1e-6), name


# --- CROWN is exact on affine graphs ------------------------------------------------------------

def test_crown_is_exact_on_affine_graphs(graphs):
    """With no nonlinear node CROWN's bounds of the real-valued network are the extremes over
    the box, attained at corners; the bounds that also cover float32 execution contain them,
    and stay close."""
    checked = 0
    for family in sorted(factory.FAMILIES):
        for seed in range(MODEL_SEEDS):
            graph = graphs(family, seed)
            if any(RULES[n.op].nonlinear for n in graph.nodes):
                continue
            checked += 1
            rng = np.random.default_rng(seed)
            lo, hi = random_box(rng, graph.input_size, "medium")
            with real_valued_network():
                lower, upper = bounds(graph, (lo, hi), "crown")
            charged_lower, charged_upper = bounds(graph, (lo, hi), "crown")  # float32 rounding too
            assert (charged_lower <= lower).all() and (charged_upper >= upper).all()
            assert np.allclose(charged_lower, lower, rtol=1e-4, atol=1e-4)
            x = torch.as_tensor((lo + hi) / 2).unsqueeze(0).requires_grad_(True)
            y = evaluate(graph, x).flatten()
            for j in range(y.numel()):
                grad, = torch.autograd.grad(y[j], x, retain_graph=True)
                grad = grad[0].numpy()
                arg_min, arg_max = np.where(grad > 0, lo, hi), np.where(grad > 0, hi, lo)
                corners = torch.as_tensor(np.stack([arg_min, arg_max]))
                y_min, y_max = evaluate(graph, corners).flatten(1)[:, j].tolist()
                scale = 1.0 + abs(y_min) + abs(y_max)
                assert abs(lower[j] - y_min) <= 1e-9 * scale, (family, seed, j, lower[j], y_min)
                assert abs(upper[j] - y_max) <= 1e-9 * scale, (family, seed, j, upper[j], y_max)
    assert checked >= 10, f"only {checked} affine graphs among the generated ones"


# --- CROWN within its tightening budget (the large networks) ------------------------------------

@pytest.mark.parametrize("share", [0.0, 0.3])
@pytest.mark.parametrize("family", ["conv_bn_pool_dense", "residual_conv", "sigmoid_tanh_mlp"])
def test_crown_past_its_budget_stays_sound(graphs, family, share, monkeypatch):
    """Where the intermediate CROWN passes would cost more than TIGHTENING_BUDGET, crown tightens
    the nodes that fit in topological order and leaves the others at their IBP (or forward-mode)
    bounds: every bound still holds, the output's too, and fewer nodes were tightened than
    full CROWN tightens (the budget took effect)."""
    from verifier.boundprop import engine

    graph = graphs(family, 0)
    rng = np.random.default_rng(2)
    lo, hi = (torch.as_tensor(side).unsqueeze(0) for side in random_box(rng, graph.input_size, "medium"))
    tightened, tighten = [], engine.tighten
    monkeypatch.setattr(engine, "tighten", lambda state, name, **kw: tightened.append(name) or tighten(state, name, **kw))
    crown(graph, lo, hi)
    full_count = len(tightened)
    monkeypatch.setattr(engine, "TIGHTENING_BUDGET", share * engine.crown_multiply_adds(ibp(graph, lo, hi), 0))
    budgeted = crown(graph, lo, hi)
    assert len(tightened) - full_count < full_count
    x = torch.as_tensor(sample_box(rng, lo[0].numpy(), hi[0].numpy(), 2000))
    values = evaluate(graph, x, keep_all=True)
    for node in graph.nodes:
        assert_within(values[node.name], *(t[0] for t in budgeted.bounds[node.name]), f"bounds of {node.name}")
    n = graph.output_size
    rows = torch.cat([torch.eye(n), -torch.eye(n)]).to(torch.float64).unsqueeze(0)
    lower = engine.output_lower_bounds(budgeted, rows)[0]
    assert_within(values[graph.output_name].flatten(1), lower[:n], -lower[n:], "output bounds")


def test_tightening_budget_takes_the_nodes_that_fit_in_order(graphs):
    """Counts decide, in topological order: a node whose passes cost more than what is left is
    skipped, a later cheaper one still taken."""
    from verifier.boundprop import engine

    graph = graphs("conv_bn_pool_dense", 0)
    state = ibp(graph, *(torch.as_tensor(side).unsqueeze(0) for side in random_box(np.random.default_rng(3),
                                                                                   graph.input_size, "wide")))
    targets = engine.needs_tight_bounds(graph)
    costs = {name: engine.TighteningBudget(graph).cost(state, name, only) for name, only in targets.items()}
    first, *rest = [name for name in targets if costs[name] > 0]
    budget = engine.TighteningBudget(graph)
    budget.left = costs[first] - 1
    assert not budget.spend(state, first, targets[first]) and budget.left == costs[first] - 1
    cheaper = [name for name in rest if costs[name] < costs[first]]
    if cheaper:
        assert budget.spend(state, cheaper[0], targets[cheaper[0]])
        assert budget.left == costs[first] - 1 - costs[cheaper[0]]


def test_large_network_starts_from_forward_mode_when_few_inputs(graphs, monkeypatch):
    """Past the budget, a network with few inputs (forward mode costing less than the budget)
    starts from forward-mode bounds: with nothing left to tighten by backward passes, crown's
    intermediate bounds are forward mode's intersected with IBP."""
    from verifier.boundprop import engine

    graph = graphs("sigmoid_tanh_mlp", 0)
    lo, hi = (torch.as_tensor(side).unsqueeze(0) for side in random_box(np.random.default_rng(4),
                                                                       graph.input_size, "medium"))
    forward_cost = 2 * graph.input_size * graph.multiply_adds()
    assert engine.crown_multiply_adds(ibp(graph, lo, hi), 0) > forward_cost, "the family must suit the test"
    monkeypatch.setattr(engine, "TIGHTENING_BUDGET", forward_cost)
    monkeypatch.setattr(engine.TighteningBudget, "spend", lambda *args: False)
    seeded, reference = crown(graph, lo, hi), forward_bounds(graph, lo, hi)
    for name in engine.needs_tight_bounds(graph):
        assert torch.allclose(seeded.bounds[name][0], reference.bounds[name][0])
        assert torch.allclose(seeded.bounds[name][1], reference.bounds[name][1])


# --- the linear relaxations of the activations ---------------------------------------------------

def interval_classes(rng, n: int):
    """Intervals of every kind: tiny, narrow, wide, all-negative, all-positive, straddling."""
    centre = rng.normal(size=n) * rng.choice([0.1, 1.0, 5.0, 30.0], size=n)
    width = rng.choice([0.0, 1e-12, 1e-8, 1e-6, 1e-4, 1e-2, 1.0, 10.0, 100.0], size=n) * rng.random(n)
    fixed = np.array([
        [-1e-7, 1e-7], [-5, 5], [0, 0], [0, 4], [-4, 0], [-100, 100], [3, 50], [-50, -3],
        [-0.5, 40], [-40, 0.5], [-1e-3, 8], [-20, 0.1], [1e-9, 2e-9], [-1e-9, 3], [-2.0, 2.0 + 1e-7],
        [-700, -690], [690, 700], [-1e-300, 1e-300], [5.0, 5.0 + 1e-6], [-0.3, -0.3 + 2e-6]])
    lo = np.concatenate([centre - width / 2, fixed[:, 0]])
    hi = np.concatenate([centre + width / 2, fixed[:, 1]])
    return torch.as_tensor(lo), torch.as_tensor(hi)


def grid(l: torch.Tensor, u: torch.Tensor, points: int) -> torch.Tensor:
    t = torch.linspace(0, 1, points, dtype=torch.float64)
    xs = l.unsqueeze(-1) + (u - l).unsqueeze(-1) * t
    return torch.minimum(torch.maximum(xs, l.unsqueeze(-1)), u.unsqueeze(-1))


def assert_relaxation_holds(f, l, u, a_lo, b_lo, a_up, b_up, points=2001, rounding=0.0):
    """a_lo x + b_lo <= f(x) <= a_up x + b_up on a grid of [l, u], up to rounding * (1 + |x|)."""
    xs = grid(l, u, points)
    fx = f(xs)
    lower = a_lo.unsqueeze(-1) * xs + b_lo.unsqueeze(-1)
    upper = a_up.unsqueeze(-1) * xs + b_up.unsqueeze(-1)
    slack = rounding * (1 + xs.abs())
    below = (lower - fx - slack).amax(-1)
    above = (fx - upper - slack).amax(-1)
    worst_lo, worst_up = int(below.argmax()), int(above.argmax())
    assert below[worst_lo] <= 0, f"lower line above f by {below[worst_lo]:.3g} on " \
                                 f"[{l[worst_lo].item()!r}, {u[worst_lo].item()!r}]"
    assert above[worst_up] <= 0, f"upper line below f by {above[worst_up]:.3g} on " \
                                 f"[{l[worst_up].item()!r}, {u[worst_up].item()!r}]"


@pytest.mark.parametrize("rule", [Sigmoid(), Tanh()], ids=["sigmoid", "tanh"])
def test_sshaped_relaxation_on_many_intervals(rule):
    l, u = interval_classes(np.random.default_rng(0), 3000)
    a_lo, b_lo, a_up, b_up = rule.relax(None, l, u)
    assert all(t.dtype == torch.float64 and t.shape == l.shape for t in (a_lo, b_lo, a_up, b_up))
    assert (a_lo >= 0).all() and (a_up >= 0).all()  # increasing functions: forward mode needs it
    assert_relaxation_holds(rule.fn, l, u, a_lo, b_lo, a_up, b_up)
    # the bare upper line too, as the backward and forward rules use it
    slope, bias = upper_line(rule.fn, rule.derivative, l, u)
    assert_relaxation_holds(rule.fn, l, u, torch.zeros_like(l), torch.full_like(l, -np.inf),
                            slope, bias)


@pytest.mark.parametrize("rule", [Sigmoid(), Tanh()], ids=["sigmoid", "tanh"])
@settings(deadline=None, max_examples=150, derandomize=True, database=None)
@given(lo=st.floats(-60, 60), width=st.one_of(st.just(0.0), st.floats(0, 1e-5), st.floats(0, 3),
                                                  st.floats(0, 120)))
def test_sshaped_relaxation_on_one_interval(rule, lo, width):
    l = torch.tensor([lo], dtype=torch.float64)
    u = l + width
    assert_relaxation_holds(rule.fn, l, u, *rule.relax(None, l, u), points=20001)


def test_relu_relaxation():
    """The chord u (x - l) / (u - l) rounds to within ~1e-16 |x| of relu: allowed (no margin is
    added, unlike the Sigmoid/Tanh lines, which must hold exactly)."""
    l, u = interval_classes(np.random.default_rng(1), 3000)
    for slope in (None, torch.rand_like(l, dtype=torch.float64)):
        a_lo, b_lo, a_up, b_up = relu_relaxation(l, u, lower_slope=slope)
        assert_relaxation_holds(torch.relu, l, u, a_lo, b_lo, a_up, b_up, rounding=1e-13)
