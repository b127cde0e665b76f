"""The low-rank SDP (verifier/sdp): the three forms of the relaxation agree, the certificate is
valid for any multipliers, the low-rank bound is below and close to the exact SDP value (cvxpy,
Clarabel), and below the true minimum on random nets (sampling + PGD); integration with the
bounds API, the CLI and verify."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnx_factory import one_torch_thread  # noqa: F401  (a fixture)
from verifier.boundprop.engine import crown
from verifier.boundprop.optimize import Spec, optimize_bounds
from verifier.float_error import real_valued_network
from verifier.graph.evaluate import evaluate
from verifier.graph.ir import Graph, Node
from verifier.sdp import SdpUnsupported, SolverOptions, sdp_lower_bounds
from verifier.sdp.certificate import certified, dual_matrix, project
from verifier.sdp.constraints import INEQUALITIES, factored, lifted, lifted_objective, objective, weighted_gradient
from verifier.sdp.problem import build_problem
from verifier.sdp.warmstart import lp_multipliers

pytestmark = pytest.mark.usefixtures("one_torch_thread")

F64 = torch.float64


def mlp(sizes, seed: int, bias: float = 0.3) -> Graph:
    """A random ReLU MLP as a float64 Graph (matmul, relu, ..., matmul)."""
    gen = torch.Generator().manual_seed(seed)
    nodes, previous = [], "x"
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = torch.randn(k, n, generator=gen, dtype=F64) * (1.5 / k ** 0.5)
        b = torch.randn(n, generator=gen, dtype=F64) * bias
        nodes.append(Node(f"fc{i}", "matmul", [previous], (n,), {"W": W, "b": b}))
        previous = f"fc{i}"
        if i < len(sizes) - 2:
            nodes.append(Node(f"relu{i}", "relu", [previous], (n,)))
            previous = f"relu{i}"
    return Graph("x", (sizes[0],), previous, nodes)


def box(n: int, seed: int, eps: float):
    gen = torch.Generator().manual_seed(seed + 1000)
    centre = torch.rand(n, generator=gen, dtype=F64)
    return centre - eps, centre + eps


def rows(n_out: int, seed: int, m: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 2000)
    return torch.randn(m, n_out, generator=gen, dtype=F64)


def problem(sizes=(4, 8, 8, 3), seed=0, eps=0.4, iterations=0):
    graph = mlp(sizes, seed)
    lo, hi = box(sizes[0], seed, eps)
    state = crown(graph, lo[None], hi[None], iterations=iterations)
    C = rows(sizes[-1], seed)
    return graph, state, build_problem(graph, state.bounds, lo, hi, C), (lo, hi, C)


def random_multipliers(prob, seed: int, scale: float = 1.0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    values = factored(prob, torch.zeros(prob.c.shape[0], prob.n_vars, 2, dtype=F64))
    return {k: torch.randn(v.shape, generator=gen, dtype=F64) * scale for k, v in values.items()}


def true_minimum(graph: Graph, lo, hi, C, samples: int = 4000, steps: int = 100) -> torch.Tensor:
    """min over the box of each row of C y, from above: random points, then PGD from the best."""
    gen = torch.Generator().manual_seed(7)
    x = lo + (hi - lo) * torch.rand(samples, lo.numel(), generator=gen, dtype=F64)
    x = torch.cat([x, lo[None], hi[None], ((lo + hi) / 2)[None]])
    best = []
    for c in C:
        values = evaluate(graph, x).reshape(len(x), -1) @ c
        start = x[values.argsort()[:16]].clone().requires_grad_(True)
        step = (hi - lo) / 20
        for _ in range(steps):
            loss = (evaluate(graph, start).reshape(len(start), -1) @ c).sum()
            grad, = torch.autograd.grad(loss, start)
            with torch.no_grad():
                start -= step * grad.sign()
                start.copy_(torch.maximum(torch.minimum(start, hi), lo))
        with torch.no_grad():
            final = evaluate(graph, start).reshape(len(start), -1) @ c
        best.append(torch.minimum(values.min(), final.min()))
    return torch.stack(best)


# ------------------------------------------------------------------ the forms agree


def test_problem_reproduces_the_network():
    graph, _, prob, (lo, hi, C) = problem()
    gen = torch.Generator().manual_seed(3)
    x = lo + (hi - lo) * torch.rand(50, lo.numel(), generator=gen, dtype=F64)
    v = prob.forward(x)
    y = evaluate(graph, x).reshape(50, -1)
    assert torch.allclose(v @ prob.c.T + prob.c0, y @ C.T, atol=1e-12)
    # every constraint holds at the network's own points (rank-one G)
    P = v.unsqueeze(2)
    for k, g in factored(prob.with_rows(torch.zeros(50, dtype=torch.long)), P).items():
        assert g.min() >= -1e-9 if k in INEQUALITIES else g.abs().max() <= 1e-9, k


def test_factored_lifted_and_dual_matrix_agree():
    _, _, prob, _ = problem()
    m, N = prob.c.shape
    gen = torch.Generator().manual_seed(1)
    P = torch.randn(m, N, 3, generator=gen, dtype=F64)
    U = torch.cat([torch.zeros(m, 1, 3, dtype=F64), P], 1)
    U[:, 0, 0] = 1
    a, b = factored(prob, P), lifted(prob, U @ U.transpose(1, 2))
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-10), k
    assert torch.allclose(objective(prob, P), lifted_objective(prob, U @ U.transpose(1, 2)))
    mult = project(random_multipliers(prob, 2))
    R = torch.randn(m, N + 1, N + 1, generator=gen, dtype=F64)
    R = R + R.transpose(1, 2)
    lagrangian = lifted_objective(prob, R) - sum((mult[k] * v).sum(1) for k, v in lifted(prob, R).items())
    S = dual_matrix(prob, mult)
    assert torch.allclose((S * R).sum((1, 2)), lagrangian, rtol=1e-10, atol=1e-9)
    assert bool((S.abs() <= dual_matrix(prob, mult, absolute=True) * (1 + 1e-12) + 1e-12).all())


def test_hand_gradient_matches_autograd():
    _, _, prob, _ = problem()
    gen = torch.Generator().manual_seed(4)
    P = torch.randn(prob.c.shape[0], prob.n_vars, 4, generator=gen, dtype=F64, requires_grad=True)
    w = random_multipliers(prob, 5)
    total = objective(prob, P) - sum((w[k] * v).sum(1) for k, v in factored(prob, P).items())
    grad, = torch.autograd.grad(total.sum(), P)
    assert torch.allclose(grad, weighted_gradient(prob, P.detach(), w), atol=1e-10)


# ------------------------------------------------------------------ the certificate


@pytest.mark.parametrize("seed", range(4))
def test_certificate_is_valid_for_any_multipliers(seed):
    """Weak duality with projected multipliers: below the objective at every network point."""
    graph, _, prob, (lo, hi, C) = problem(seed=seed)
    for scale in (0.1, 3.0):
        bound, _, _ = certified(prob, random_multipliers(prob, seed, scale))
        assert bool((bound <= true_minimum(graph, lo, hi, C, steps=20) + 1e-9).all())


def test_warm_start_reproduces_crown():
    graph, state, prob, (lo, hi, C) = problem(sizes=(5, 10, 10, 4), seed=3)
    spec = Spec(C, torch.full((len(C),), 1e30, dtype=F64), torch.arange(len(C)), len(C))
    with real_valued_network():  # the SDP bounds the real-valued network
        plain, _, _ = optimize_bounds(state, spec, 0)
        best, alphas, _ = optimize_bounds(state, spec, 20)  # best per row; the last slopes give less
    bound, _, _ = certified(prob, lp_multipliers(prob, state, None))
    assert torch.allclose(bound, plain[0], rtol=1e-6, atol=1e-6), (bound - plain[0])  # less only the rounding guard
    assert bool((bound <= plain[0]).all())
    bound, _, _ = certified(prob, lp_multipliers(prob, state, alphas))
    assert bool((bound <= best[0] + 1e-9).all()) and bool((bound >= plain[0] - 1e-6).all())


# ------------------------------------------------------------------ against the exact SDP


@pytest.mark.parametrize("seed", [0, 1])
def test_low_rank_bound_is_below_and_near_the_exact_sdp(seed):
    pytest.importorskip("cvxpy")
    from verifier.sdp.exact import certified_exact

    from verifier.sdp import INTERMEDIATE_ITERATIONS

    # the intermediate bounds sdp_lower_bounds uses, so that both solve the same relaxation
    graph, state, prob, (lo, hi, C) = problem(sizes=(4, 8, 8, 3), seed=seed, iterations=INTERMEDIATE_ITERATIONS)
    assert prob.n_relu <= 16
    exact, exact_certified = certified_exact(prob)
    assert np.isfinite(exact).all()
    result = sdp_lower_bounds(graph, lo, hi, C, options=SolverOptions(time_limit=6, outer=300))
    low_rank = result.sdp_lower.numpy()
    tol = 1e-5 * (1 + np.abs(exact))
    assert (low_rank <= exact + tol).all()
    assert (exact_certified <= exact + tol).all()
    assert (exact_certified >= exact - 1e-3 * (1 + np.abs(exact))).all()  # IPM duals certify it
    assert (low_rank >= exact - 0.02 * (1 + np.abs(exact))).all(), (low_rank, exact)
    assert (result.lower.numpy() >= result.alpha_lower.numpy()).all()


# ------------------------------------------------------------------ soundness on random nets


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), width=st.sampled_from([4, 8, 12]), depth=st.sampled_from([1, 2, 3]),
       eps=st.sampled_from([0.05, 0.3, 1.0]))
def test_sdp_bounds_are_below_the_true_minimum(seed, width, depth, eps):
    sizes = (3,) + (width,) * depth + (3,)
    graph = mlp(sizes, seed)
    lo, hi = box(3, seed, eps)
    C = rows(3, seed)
    result = sdp_lower_bounds(graph, lo, hi, C, options=SolverOptions(time_limit=1.0, outer=20))
    assert result.lower.dtype == F64
    assert bool((result.lower <= true_minimum(graph, lo, hi, C) + 1e-9).all())


def test_fixed_inputs_and_stable_neurons_are_folded():
    graph = mlp((6, 10, 10, 2), 5)
    lo, hi = box(6, 5, 0.3)
    lo[:3] = hi[:3]  # three fixed inputs
    C = rows(2, 5, m=2)
    result = sdp_lower_bounds(graph, lo, hi, C, options=SolverOptions(time_limit=1.0))
    assert result.n_vars == 3 + result.n_relu
    assert bool((result.lower <= true_minimum(graph, lo, hi, C) + 1e-9).all())


# ------------------------------------------------------------------ integration


def test_unsupported_graphs_are_declined():
    graph = mlp((3, 4, 2), 0)
    graph.nodes[1].op = "tanh"
    with pytest.raises(SdpUnsupported, match="tanh"):
        sdp_lower_bounds(graph, torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64), torch.eye(2, dtype=F64))


def test_bounds_api_sdp_is_between_crown_and_samples(monkeypatch):
    import verifier.sdp
    from verifier.api import bounds

    monkeypatch.setattr(verifier.sdp, "DEFAULT_TIME_LIMIT", 2.0)
    graph = mlp((4, 10, 10, 3), 2)
    lo, hi = box(4, 2, 0.5)
    box_np = (lo.numpy(), hi.numpy())
    c_lo, c_hi = bounds(graph, box_np, method="crown")
    s_lo, s_hi = bounds(graph, box_np, method="sdp")
    y = evaluate(graph, lo + (hi - lo) * torch.rand(2000, 4, dtype=F64)).reshape(2000, -1).numpy()
    assert (s_lo >= c_lo - 1e-9).all() and (s_hi <= c_hi + 1e-9).all()
    assert (s_lo <= y.min(0) + 1e-9).all() and (s_hi >= y.max(0) - 1e-9).all()


def test_cli_bounds_sdp(capsys, monkeypatch):
    import verifier.sdp
    from verifier.cli import main

    from conftest import BENCH, ROOT

    monkeypatch.setattr(verifier.sdp, "DEFAULT_TIME_LIMIT", 1.0)

    model = BENCH / "onnx" / "digits_mlp.onnx"
    spec = ROOT / "specs" / "digits_mlp_img386_eps0.08.vnnlib"
    assert main(["bounds", str(model), str(spec), "--method", "sdp", "--json"]) == 0
    assert main(["bounds", str(BENCH / "onnx" / "digits_tanh.onnx"), str(spec), "--method", "sdp"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: SDP: op 'tanh'") and err.count("\n") == 1


def test_verify_uses_the_sdp_where_alpha_crown_fails():
    """An adversarially trained net (bench_instances/sdp_benchmark.py) and a spec that
    alpha-CROWN leaves open and the low-rank SDP proves."""
    import verifier
    from verifier.api import load_model, load_spec

    from conftest import BENCH

    spec = BENCH / "sdp" / "adv_mlp_3x24_img1375_eps0.10.vnnlib"
    graph = load_model(BENCH / "sdp" / "adv_mlp_3x24.onnx").to(F64)
    region = load_spec(spec, graph)[0]
    C = torch.as_tensor(np.concatenate([dj.C for dj in region.disjuncts]))
    d = torch.as_tensor(np.concatenate([dj.d for dj in region.disjuncts]))
    alpha = sdp_lower_bounds(graph, torch.as_tensor(region.lo), torch.as_tensor(region.hi), C, d,
                             SolverOptions(time_limit=0.0)).alpha_lower
    assert bool((alpha <= d).any())  # alpha-CROWN alone does not prove it
    result = verifier.verify(BENCH / "sdp" / "adv_mlp_3x24.onnx", spec, timeout=60, split="relu")
    assert result.verdict == "unsat" and "sdp refuted" in result.stage
