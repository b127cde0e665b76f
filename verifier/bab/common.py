"""What the branch-and-bound stages share: their outcome, and trying points as counterexamples."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from verifier.result import Witness

_MAX_CONFIRMATIONS = 8  # onnxruntime replays per batch of candidates


@dataclass
class BabOutcome:
    verdict: str  # "sat", "unsat" or "unknown"
    witness: Witness | None
    domains: int  # how many domains (boxes or split sets) were bounded
    note: str = ""


@torch.no_grad()
def try_counterexamples(query, region, points: torch.Tensor):
    """Evaluate points (N, n) in float64; replay the most violating ones in onnxruntime."""
    from verifier.attack.pgd import disjunct_margins, disjunct_tensors

    graph = query.graph64
    C, d = disjunct_tensors(region, graph.device, torch.float64)
    best = disjunct_margins(graph, points.to(graph.device, torch.float64), C, d, points_per_chunk(graph)).min(1).values
    order = best.argsort()
    for i in order[:_MAX_CONFIRMATIONS]:
        if best[i] > 0:
            break
        witness = query.confirm(region, points[i].cpu().numpy())
        if witness is not None:
            return witness
    return None


# Points evaluated at once, times the graph's neurons (ml4acopf's 118-bus network: 240,000
# corner points of 1,024 boxes and 236 disjuncts went past 24 GB in one batch).
_EVALUATED_ELEMENTS = 2 ** 26


def points_per_chunk(graph) -> int:
    return max(1, _EVALUATED_ELEMENTS // sum(node.size for node in graph.nodes))
