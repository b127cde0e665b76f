"""Low-rank (Burer-Monteiro) SDP bounds for ReLU chains, with sound float64 certificates.

`sdp_lower_bounds` is the entry point: alpha-CROWN (intermediate bounds and the spec rows),
then the lifted SDP of the rows alpha-CROWN leaves open, solved on a thin factor by an
augmented Lagrangian, each bound certified from the multipliers alone (`certificate`).
`stage.sdp_stage` is the pipeline's hook. See README, "Low-rank SDP".
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from verifier.boundprop.engine import crown
from verifier.boundprop.optimize import Spec, optimize_bounds
from verifier.sdp.problem import SdpUnsupported, build_problem, check_supported
from verifier.sdp.solver import SolverOptions, solve
from verifier.sdp.warmstart import lp_multipliers

__all__ = ["SdpUnsupported", "SdpBounds", "SolverOptions", "check_supported", "sdp_lower_bounds"]

INTERMEDIATE_ITERATIONS = 10  # alpha-CROWN steps per intermediate node (as the ReLU BaB root)
SPEC_ITERATIONS = 40  # alpha-CROWN steps on the spec rows
MAX_VARIABLES = 1500  # free inputs + unstable ReLUs; beyond this the dense certificate is too slow
DEFAULT_TIME_LIMIT = 10.0  # seconds for the SDP solve when no options are given


@dataclass
class SdpBounds:
    lower: torch.Tensor  # (m,) float64 sound lower bounds of the rows: max(alpha-CROWN, SDP)
    alpha_lower: torch.Tensor  # (m,) alpha-CROWN's alone
    sdp_lower: torch.Tensor  # (m,) the SDP certificate alone (-inf on rows not tried)
    n_vars: int
    n_relu: int
    time: float


def sdp_lower_bounds(graph, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor,
                     d: torch.Tensor | None = None, options: SolverOptions | None = None,
                     max_variables: int = MAX_VARIABLES, alpha_iterations: int = SPEC_ITERATIONS) -> SdpBounds:
    """Sound float64 lower bounds of C y over the box [lo, hi] (flat (n_in,)) for a ReLU chain.

    With thresholds d (m,), rows whose alpha-CROWN bound already exceeds d are not given to
    the SDP, and the SDP stops once every row's bound exceeds d. Raises SdpUnsupported for
    graphs that are not chains of affine ops and ReLUs, or that are too large.
    """
    import time

    began = time.monotonic()
    reason = check_supported(graph)
    if reason is not None:
        raise SdpUnsupported(f"SDP: {reason}")
    device = graph.device
    graph = graph.to(torch.float64, device)
    lo = torch.as_tensor(lo, dtype=torch.float64, device=device).reshape(1, -1)
    hi = torch.as_tensor(hi, dtype=torch.float64, device=device).reshape(1, -1)
    C = torch.as_tensor(C, dtype=torch.float64, device=device)
    m = C.shape[0]
    state = crown(graph, lo, hi, iterations=INTERMEDIATE_ITERATIONS)
    spec = Spec(C, d if d is not None else C.new_full((m,), 1e30), torch.arange(m, device=device), m)
    alpha_lower, alphas, _ = optimize_bounds(state, spec, alpha_iterations)
    alpha_lower = alpha_lower[0]
    prob = build_problem(graph, state.bounds, lo[0], hi[0], C)
    if prob.n_vars > max_variables:
        raise SdpUnsupported(f"SDP: {prob.n_vars} variables (free inputs + unstable ReLUs) exceed {max_variables}")
    open_rows = torch.arange(m, device=device) if d is None else (alpha_lower <= d).nonzero().flatten()
    sdp_lower = torch.full((m,), float("-inf"), dtype=torch.float64, device=device)
    if open_rows.numel() and prob.n_relu:
        sub = prob.with_rows(open_rows)
        warm = lp_multipliers(sub, state, {k: v[:, open_rows] for k, v in alphas.items()})
        target = None if d is None else _target(d[open_rows].to(torch.float64), alpha_lower)
        options = options or SolverOptions(time_limit=DEFAULT_TIME_LIMIT)
        result = solve(sub, options, target=target, multipliers=warm)
        sdp_lower[open_rows] = result.lower
    lower = torch.maximum(alpha_lower, sdp_lower)
    return SdpBounds(lower, alpha_lower, sdp_lower, prob.n_vars, prob.n_relu, time.monotonic() - began)


def _target(d: torch.Tensor, alpha_lower: torch.Tensor) -> torch.Tensor:
    """d plus 100 times the unsat margin of decide.refuted_disjuncts, so that stopping at the
    target leaves a bound that the decision accepts."""
    finite = alpha_lower[torch.isfinite(alpha_lower)]
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    return d + 1e-4 * (1.0 + scale + d.abs())
