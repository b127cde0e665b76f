"""ReLU-split domains: bounds optimised in float32 are kept only as float64 certificates, and
every certified bound lies below the true minimum over its domain."""
import numpy as np
import pytest
import torch

from test_leaf_lp import small_net
from verifier.bab import relu_split
from verifier.boundprop.engine import crown
from verifier.boundprop.optimize import Spec, optimize_bounds, relu_nodes
from verifier.graph.evaluate import evaluate


def domain_minima(graph, root, domains, points: int = 201) -> torch.Tensor:
    """Per domain, the least output over a grid of [-1, 1]^2 restricted to its split pattern
    (+inf where no grid point has it)."""
    axis = torch.linspace(-1, 1, points, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    values = evaluate(graph, grid, keep_all=True)
    inside = torch.ones(len(domains), len(grid), dtype=torch.bool)
    for node in relu_nodes(root):
        split = domains.splits[node.name].flatten(1).unsqueeze(1)  # (N, 1, k)
        z = values[node.inputs[0]].reshape(1, len(grid), -1)
        inside &= ((split == 0) | ((split > 0) & (z >= 0)) | ((split < 0) & (z <= 0))).all(2)
    y = values[graph.output_name].reshape(1, -1).expand(len(domains), -1)
    return torch.where(inside, y, torch.full_like(y, float("inf"))).min(1).values


def split_tree(graph, depth: int):
    """Bound the root, then split every domain's best-scoring neuron `depth` times, bounding each
    generation; returns the root state, the spec and every generation's domains."""
    lo, hi = -torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    root = crown(graph, lo, hi)
    spec = Spec(torch.ones(1, 1, dtype=torch.float64), torch.full((1,), 1e6, dtype=torch.float64),
                torch.zeros(1, dtype=torch.long), 1)
    pre = {n.name: n.inputs[0] for n in relu_nodes(root)}
    domains = relu_split.bound_domains(root, spec, relu_split.root_domains(root, spec), 20)
    generations = [domains]
    for _ in range(depth):
        flat = torch.cat([s.flatten(1) for s in domains.scores.values()], 1)
        branchable = torch.isfinite(flat.max(1).values)
        if not branchable.any():
            break
        domains = domains.select(branchable.nonzero().flatten())
        children = relu_split.split_children(domains, flat[branchable].argmax(1), pre)
        domains = relu_split.bound_domains(root, spec, children, 10)
        generations.append(domains)
    return root, spec, generations


@pytest.mark.parametrize("seed", range(4))
def test_certified_domain_bounds_are_float64_and_below_the_domain_minimum(tmp_path, seed):
    graph = small_net(tmp_path, seed)
    root, spec, generations = split_tree(graph, depth=3)
    assert len(generations) > 1
    for domains in generations:
        assert domains.lower.dtype == torch.float64
        assert all(a.dtype == relu_split.SEARCH_DTYPE for a in domains.alphas.values())
        minima = domain_minima(graph, root, domains)
        assert torch.isfinite(minima).any()
        assert bool((domains.lower[:, 0] <= minima + 1e-12).all())


def test_certificate_matches_the_float32_search_bound(tmp_path):
    graph = small_net(tmp_path, 1)
    root, spec, generations = split_tree(graph, depth=2)
    for domains in generations:
        search = relu_split._state_for(root, domains, relu_split.SEARCH_DTYPE)
        lower32, _, _ = optimize_bounds(search, spec.to(relu_split.SEARCH_DTYPE), 0, alphas=dict(domains.alphas),
                                        betas=dict(domains.betas), splits=domains.splits)
        certified = relu_split._certified(relu_split._state_for(root, domains), spec, domains, domains.alphas,
                                          domains.betas)
        assert certified.dtype == torch.float64
        np.testing.assert_allclose(certified.numpy(), lower32.double().numpy(), rtol=1e-5, atol=1e-5)
        assert bool((domains.lower >= certified).all())  # the best of the certificate and the parent's
