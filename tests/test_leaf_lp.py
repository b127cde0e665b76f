"""Fully split leaves: the LP's minimum is exact, and its duals make a sound float64 bound."""
import numpy as np
import pytest
import torch

from onnx_factory import OnnxBuilder, _dense
from verifier.bab.leaf_lp import betas_from, solve_leaf
from verifier.bab.relu_split import root_domains, _state_for
from verifier.boundprop.engine import crown
from verifier.boundprop.optimize import Spec, optimize_bounds, relu_nodes
from verifier.float_error import real_valued_network
from verifier.graph.evaluate import evaluate
from verifier.graph.onnx_loader import load_onnx


def small_net(tmp_path, seed):
    rng = np.random.default_rng(seed)
    b = OnnxBuilder([1, 2], rng=rng)
    h = _dense(b, b.input, 2, 6, rng, "Relu")
    h = _dense(b, h, 6, 6, rng, "Relu")
    y = _dense(b, h, 6, 1, rng)
    return load_onnx(b.save(tmp_path / "net.onnx", y)).to(torch.float64)


def leaf_grid_minimum(graph, root, leaf, points: int) -> torch.Tensor:
    """The least output over the leaf's inputs: points x points grid points of [-1, 1]^2 with
    the leaf's activation pattern on its split neurons."""
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, points, dtype=torch.float64)] * 2,
                                      indexing="ij"), -1).reshape(-1, 2)
    values = evaluate(graph, grid, keep_all=True)
    inside = torch.ones(len(grid), dtype=torch.bool)
    for node in relu_nodes(root):
        split = leaf.splits[node.name].flatten()
        z = values[node.inputs[0]].reshape(len(grid), -1)
        inside &= ((split == 0) | ((split > 0) & (z >= 0)) | ((split < 0) & (z <= 0))).all(1)
    return values[graph.output_name].reshape(-1)[inside].min()


def leaf_at(graph, lo, hi, x0, flip=None):
    """A leaf whose every unstable neuron is split the way it is at x0 (one flipped if asked)."""
    state = crown(graph, lo, hi)
    spec = Spec(torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                torch.zeros(1, dtype=torch.long), 1)
    domains = root_domains(state, spec)
    values = evaluate(graph, x0, keep_all=True)
    for k, node in enumerate(relu_nodes(state)):
        l, u = domains.bounds[node.inputs[0]]
        z = values[node.inputs[0]]
        unstable = (l < 0) & (u > 0)
        sign = torch.where(z >= 0, 1, -1).to(torch.int8)
        if flip is not None and flip[0] == k:
            sign.view(-1)[flip[1]] *= -1
        domains.splits[node.name] = torch.where(unstable, sign, torch.zeros_like(sign))
        l, u = l.clone(), u.clone()
        l[unstable & (sign > 0)] = 0
        u[unstable & (sign < 0)] = 0
        domains.bounds[node.inputs[0]] = (l, u)
    return state, spec, domains


@pytest.mark.parametrize("seed", range(6))
def test_lp_minimum_is_exact_and_its_certificate_sound(tmp_path, seed):
    graph = small_net(tmp_path, seed)
    lo, hi = -torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    x0 = torch.zeros(1, 2, dtype=torch.float64) + 0.1 * seed / 6
    root, spec, leaf = leaf_at(graph, lo, hi, x0)
    state = _state_for(root, leaf)
    pre = {n.name: n.inputs[0] for n in relu_nodes(root)}
    minimisers, multipliers = solve_leaf(state, spec.C, leaf.splits, pre)
    sampled_min = leaf_grid_minimum(graph, root, leaf, 301)
    lp_min = evaluate(graph, torch.as_tensor(minimisers[0]).reshape(1, 2)).item()
    assert lp_min <= sampled_min.item() + 1e-9
    assert lp_min >= sampled_min.item() - 0.05  # the grid is fine enough to come close
    betas = betas_from(multipliers, leaf.betas)
    with real_valued_network():  # the LP's optimum is the real-valued network's
        certified, _, _ = optimize_bounds(state, spec, 0, alphas=leaf.alphas, betas=betas, splits=leaf.splits)
    assert certified.item() <= lp_min + 1e-9
    assert certified.item() >= lp_min - 1e-6
    charged, _, _ = optimize_bounds(state, spec, 0, alphas=leaf.alphas, betas=betas, splits=leaf.splits)
    assert certified.item() - 1e-4 <= charged.item() <= certified.item()  # float32 execution too


def test_an_empty_leaf_is_certified_empty(tmp_path):
    graph = small_net(tmp_path, 7)
    lo, hi = -torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    x0 = torch.zeros(1, 2, dtype=torch.float64)
    for layer, neuron in [(0, i) for i in range(6)]:
        root, spec, leaf = leaf_at(graph, lo, hi, x0, flip=(layer, neuron))
        state = _state_for(root, leaf)
        pre = {n.name: n.inputs[0] for n in relu_nodes(root)}
        minimisers, multipliers = solve_leaf(state, spec.C, leaf.splits, pre)
        if minimisers is None:  # the flipped pattern is infeasible: a certificate is due
            bound, _, _ = optimize_bounds(state, spec, 0, alphas=leaf.alphas,
                                          betas=betas_from(multipliers, leaf.betas), splits=leaf.splits)
            assert bound.item() > 1e3
            return
    pytest.skip("no infeasible flip for this network")
