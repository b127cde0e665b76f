"""The constraints of the lifted SDP, in two equivalent forms.

Lifted matrix G = [[1, v^T], [v, V]] (N+1 square), V standing in for v v^T. With x = a_j . v +
beta_j the pre-activation and z the output of unstable ReLU j, l <= x_in <= u an input:

  input box    (x_in - l)(u - x_in) >= 0   lifted: -V_ii + (l+u) v_i - l u >= 0
  lo, hi       x_in - l >= 0, u - x_in >= 0   (implied by the box and G >= 0; they let the
               dual start from alpha-CROWN's linear bound, see `warmstart`)
  pos          z >= 0
  ge           z - x >= 0
  tri          pu (x - pl) - (pu - pl) z >= 0        (the LP triangle)
  relu (eq)    z (z - x) = 0               lifted: V_zz - a . V_{:,z} - beta z = 0
  out box      z (pu - z) >= 0             lifted: pu z - V_zz >= 0
  pre box      (x - pl)(pu - x) >= 0       lifted: -a^T V a + (pl+pu-2 beta) a.v - (beta-pl)(beta-pu) >= 0

Each holds for the true network, so the SDP's minimum lower-bounds the margin. `lifted` reads
them off any G (homogeneous: constants multiply G_00), `factored` off G = U U^T with the first
row of U equal to e_1 and the others P (B, N, r): v = P[..., 0], V = P P^T.
"""
from __future__ import annotations

import torch

from verifier.sdp.problem import SdpProblem

INEQUALITIES = ("box", "lo", "hi", "pos", "ge", "tri", "out", "pre")
EQUALITIES = ("relu",)


def factored(prob: SdpProblem, P: torch.Tensor) -> dict[str, torch.Tensor]:
    """Constraint values (B, k) per family for the factor P (B, N, r)."""
    nf = prob.n_free
    v = P[..., 0]
    sq = (P * P).sum(-1)
    AP = prob.A @ P  # (B, n_relu, r)
    x = AP[..., 0] + prob.beta
    z, sq_z = v[:, nf:], sq[:, nf:]
    l, u = prob.in_lo, prob.in_hi
    pl, pu, beta = prob.pl, prob.pu, prob.beta
    return {
        "box": -sq[:, :nf] + (l + u) * v[:, :nf] - l * u,
        "lo": v[:, :nf] - l,
        "hi": u - v[:, :nf],
        "pos": z,
        "ge": z - x,
        "tri": pu * (x - pl) - (pu - pl) * z,
        "out": pu * z - sq_z,
        "pre": -(AP * AP).sum(-1) + (pl + pu - 2 * beta) * AP[..., 0] - (beta - pl) * (beta - pu),
        "relu": sq_z - (AP * P[:, nf:]).sum(-1) - beta * z,
    }


def weighted_gradient(prob: SdpProblem, P: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
    """d/dP of objective(P) - sum_k w_k . factored(P)_k, by hand (autograd costs 10x more)."""
    nf = prob.n_free
    pl, pu, beta = prob.pl, prob.pu, prob.beta
    AP = prob.A @ P
    grad = torch.zeros_like(P)
    grad[..., 0] = prob.c
    box = w["box"].unsqueeze(2)
    grad[:, :nf] += 2 * box * P[:, :nf]
    grad[:, :nf, 0] -= w["box"] * (prob.in_lo + prob.in_hi) + w["lo"] - w["hi"]
    Pz = P[:, nf:]
    out, relu = w["out"].unsqueeze(2), w["relu"].unsqueeze(2)
    grad[:, nf:] += 2 * (out - relu) * Pz + relu * AP
    grad[:, nf:, 0] -= w["pos"] + w["ge"] - w["tri"] * (pu - pl) + w["out"] * pu - w["relu"] * beta
    # terms through AP = A P: d/dAP of sum w g, mapped back by A^T
    through = 2 * w["pre"].unsqueeze(2) * AP + relu * Pz
    through[..., 0] += w["ge"] - w["tri"] * pu - w["pre"] * (pl + pu - 2 * beta)
    return grad + prob.A.T @ through


def objective(prob: SdpProblem, P: torch.Tensor) -> torch.Tensor:
    return (prob.c * P[..., 0]).sum(-1) + prob.c0


def lifted(prob: SdpProblem, G: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same constraint values for a lifted matrix G (B, N+1, N+1), linear in G."""
    nf = prob.n_free
    g00, v, V = G[:, 0, 0], G[:, 0, 1:], G[:, 1:, 1:]
    one = g00.unsqueeze(1)
    dV = torch.diagonal(V, dim1=1, dim2=2)
    Av = v @ prob.A.T
    x = Av + prob.beta * one
    z = v[:, nf:]
    AV = prob.A @ V  # (B, n_relu, N)
    a_dot_col = torch.diagonal(AV[:, :, nf:], dim1=1, dim2=2)
    aVa = (AV * prob.A).sum(-1)
    l, u = prob.in_lo, prob.in_hi
    pl, pu, beta = prob.pl, prob.pu, prob.beta
    return {
        "box": -dV[:, :nf] + (l + u) * v[:, :nf] - l * u * one,
        "lo": v[:, :nf] - l * one,
        "hi": u * one - v[:, :nf],
        "pos": z,
        "ge": z - x,
        "tri": pu * (x - pl * one) - (pu - pl) * z,
        "out": pu * z - dV[:, nf:],
        "pre": -aVa + (pl + pu - 2 * beta) * Av - (beta - pl) * (beta - pu) * one,
        "relu": dV[:, nf:] - a_dot_col - beta * z,
    }


def lifted_objective(prob: SdpProblem, G: torch.Tensor) -> torch.Tensor:
    return (prob.c * G[:, 0, 1:]).sum(-1) + prob.c0 * G[:, 0, 0]
