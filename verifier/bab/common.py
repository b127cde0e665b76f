"""What the branch-and-bound stages share: their outcome, and trying points as counterexamples."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from verifier.graph.evaluate import evaluate
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
    from verifier.attack.pgd import disjunct_tensors, margins

    graph = query.graph64
    y = evaluate(graph, points.to(graph.device, torch.float64)).reshape(len(points), -1)
    C, d = disjunct_tensors(region, graph.device, torch.float64)
    best = torch.stack([margins(y, C, d, torch.full((len(y),), k, device=y.device))
                        for k in range(C.shape[0])], 1).min(1).values
    order = best.argsort()
    for i in order[:_MAX_CONFIRMATIONS]:
        if best[i] > 0:
            break
        witness = query.confirm(region, points[i].cpu().numpy())
        if witness is not None:
            return witness
    return None
