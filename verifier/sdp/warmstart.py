"""Multipliers that reproduce a (alpha-)CROWN bound in the SDP's dual.

CROWN's backward pass is a feasible point of the dual of the triangle LP: a ReLU output with
coefficient lam > 0 is bounded below by alpha x = (1 - alpha) * 0 + alpha * x, i.e. the
constraints z >= 0 and z >= x with weights lam (1 - alpha) and lam alpha; one with lam < 0 by
the triangle, weight -lam / (pu - pl); the input box concretisation uses the linear bounds
x >= l, x <= u. Started there, the SDP's certificate is at least CROWN's bound (its quadratic
part is zero), and the augmented Lagrangian only refines it.
"""
from __future__ import annotations

import torch

from verifier.boundprop.engine import BoundState, backward
from verifier.sdp.constraints import EQUALITIES, INEQUALITIES
from verifier.sdp.problem import SdpProblem


def lp_multipliers(prob: SdpProblem, state: BoundState, alphas: dict | None = None) -> dict[str, torch.Tensor]:
    """(m, k) multipliers per family from one backward pass of the spec rows prob.c's source C
    over `state` (one box), with the given lower slopes (None: CROWN's adaptive ones)."""
    graph = state.graph
    m = prob.c.shape[0]
    record = {name: None for name, _ in prob.sources}
    record[graph.input_name] = None
    saved = state.alphas
    state.alphas = alphas or {}
    try:
        backward(state, graph.output_name, prob.spec_rows.reshape(1, m, *graph.output_shape), record,
                 use_parameters=True)
    finally:
        state.alphas = saved
    mult = {k: prob.c.new_zeros(m, prob.n_free) for k in ("box", "lo", "hi")}
    lam_x = record[graph.input_name][0].flatten(1)[:, prob.free]
    mult["lo"], mult["hi"] = lam_x.clamp(min=0), (-lam_x).clamp(min=0)
    parts = {k: [] for k in ("pos", "ge", "tri")}
    for name, mask in prob.sources:
        lam = record[name][0].flatten(1)[:, mask]
        l, u = (t.reshape(-1)[mask] for t in state.bounds[graph.by_name[name].inputs[0]])
        if alphas and name in alphas:
            slope = alphas[name][0].flatten(1)[:, mask]
        else:
            slope = (u > -l).to(lam.dtype).expand_as(lam)
        up = lam.clamp(min=0)
        parts["pos"].append(up * (1 - slope))
        parts["ge"].append(up * slope)
        parts["tri"].append((-lam).clamp(min=0) / (u - l))
    for k, v in parts.items():
        mult[k] = torch.cat(v, 1)
    for k in INEQUALITIES + EQUALITIES:
        mult.setdefault(k, prob.c.new_zeros(m, prob.n_relu))
    return mult
