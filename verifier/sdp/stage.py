"""The pipeline's SDP stage: before ReLU branch and bound, the disjuncts that alpha-CROWN leaves
open are tried with the low-rank SDP under a small time budget. Unsat only through
`query.refuted` on the float64 certified bounds."""
from __future__ import annotations

import time

import torch

from verifier.boundprop.engine import crown
from verifier.sdp import SdpUnsupported, SolverOptions, check_supported, sdp_lower_bounds
from verifier.spec.region import Region

BUDGET_FRACTION = 0.1  # of the time left
BUDGET_CAP = 20.0  # seconds
BUDGET_FLOOR = 1.0  # below this much budget the stage is skipped
MAX_VARIABLES = 600  # free inputs + unstable ReLUs (plain CROWN's count): larger go straight to BaB


def sdp_stage(query, region: Region) -> tuple[Region | None, str]:
    """(the region with the disjuncts the SDP refutes removed, or None when it refutes them
    all; a note for the stage line). The region comes back unchanged when the graph is not a
    ReLU chain, the problem is too large, or no time is left."""
    graph = query.graph64
    budget = min(BUDGET_CAP, BUDGET_FRACTION * (query.deadline - time.monotonic()))
    if budget < BUDGET_FLOOR or check_supported(graph) is not None:
        return region, ""
    lo = torch.as_tensor(region.lo, dtype=torch.float64, device=graph.device)
    hi = torch.as_tensor(region.hi, dtype=torch.float64, device=graph.device)
    if _size_estimate(graph, lo, hi) > MAX_VARIABLES:
        return region, ""
    spec = query.spec(region, exact=True)  # the SDP bounds the real-valued network alone
    try:
        bounds = sdp_lower_bounds(graph, lo, hi, spec.C, spec.threshold, SolverOptions(time_limit=budget),
                                  max_variables=MAX_VARIABLES)
    except SdpUnsupported:
        return region, ""
    query.check_time()
    refuted = query.refuted(bounds.lower.unsqueeze(0), spec)[0].cpu().numpy()
    note = f"sdp refuted {int(refuted.sum())}/{len(refuted)} disjuncts in {bounds.time:.1f} s"
    if refuted.all():
        return None, note
    left = [dj for dj, done in zip(region.disjuncts, refuted) if not done]
    return Region(region.lo, region.hi, left), note


def _size_estimate(graph, lo: torch.Tensor, hi: torch.Tensor) -> int:
    """Free inputs plus the ReLUs plain CROWN leaves unstable (alpha-CROWN's are fewer); the
    cheap check comes first, so that large inputs cost nothing."""
    free = int((hi > lo).sum())
    if free > MAX_VARIABLES:
        return free
    state = crown(graph, lo.unsqueeze(0), hi.unsqueeze(0))
    unstable = 0
    for node in graph.nodes:
        if node.op == "relu":
            l, u = state.bounds[node.inputs[0]]
            unstable += int(((l < 0) & (u > 0)).sum())
    return free + unstable
