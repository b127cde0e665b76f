"""A sound lower bound of the SDP (and so of the network's margin) from any multipliers.

Write every constraint as <A_i, G> >= 0 (or = 0) with G_00 = 1, and the objective as <C0, G>.
For ANY y >= 0 (inequalities), any z (equalities) and any mu, every feasible G satisfies

    <C0, G> >= <C0, G> - sum y_i <A_i, G> - sum z_i <A_i, G> = <S, G> + mu,
    S = C0 - sum y_i A_i - sum z_i A_i - mu e_0 e_0^T,

and <S, G> >= lambda_min(S) tr(G) >= min(0, lambda_min(S)) T, where T >= tr(G) over the
feasible set is fixed in advance by the box constraints (`SdpProblem.diag_bounds`). With a
positive diagonal scaling D and G_ii <= t_i, <S, G> = <D S D, D^-1 G D^-1> >= (N+1) min(0,
lambda_min(D S D)) for D_ii = sqrt(t_i); both forms are evaluated and the better one kept.
So the bound mu + T min(0, lambda_min) is valid whatever the solver did: the multipliers are
projected (y >= 0), S is assembled in float64, and lambda_min is widened by a bound on the
rounding of S's entries and of the symmetric eigensolver. The solver's own objective value is
never used. mu is chosen to maximise the bound (a secular equation), then checked like the rest.
"""
from __future__ import annotations

import torch

from verifier.sdp.constraints import EQUALITIES, INEQUALITIES
from verifier.sdp.problem import SdpProblem

_EPS = 2.0 ** -52


def project(mult: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Multipliers in float64 with the inequality ones clamped to >= 0."""
    out = {k: mult[k].to(torch.float64).clamp(min=0) for k in INEQUALITIES}
    out.update({k: mult[k].to(torch.float64) for k in EQUALITIES})
    return out


def dual_matrix(prob: SdpProblem, mult: dict[str, torch.Tensor], absolute: bool = False) -> torch.Tensor:
    """S (B, N+1, N+1) for mu = 0. With absolute, the same sums of terms with every term
    replaced by its absolute value (products of absolute values inside matrix products): the
    scale of the rounding in S's entries."""
    f = torch.abs if absolute else (lambda t: t)
    neg = (lambda t: t) if absolute else (lambda t: -t)
    A = prob.A.abs() if absolute else prob.A
    nf, N = prob.n_free, prob.n_vars
    y, z = mult, mult["relu"]
    l, u, pl, pu, beta = prob.in_lo, prob.in_hi, prob.pl, prob.pu, prob.beta
    B = z.shape[0]
    # G_00: c0 - sum y gamma
    s00 = (f(prob.c0) + f(y["box"] * l * u).sum(1) + f(y["ge"] * beta).sum(1)
           + f(y["lo"] * l).sum(1) + neg(f(y["hi"] * u)).sum(1)
           + neg(f(y["tri"] * pu * (beta - pl))).sum(1) + f(y["pre"] * (beta - pl) * (beta - pu)).sum(1))
    # G_0v: (c - sum y alpha) / 2
    alpha = torch.cat([f(y["box"] * (l + u)) + f(y["lo"]) + neg(f(y["hi"])),
                       f(y["pos"]) + f(y["ge"]) + neg(f(y["tri"] * (pu - pl))) + f(y["out"] * pu)
                       + neg(f(z * beta))], 1)
    alpha = alpha + neg(f(y["ge"]) @ A) + f(y["tri"] * pu) @ A + f(y["pre"] * (pl + pu - 2 * beta)) @ A
    s = f(prob.c).expand(B, N) + neg(alpha)
    # G_vv: - sum y Q
    Svv = torch.diag_embed(torch.cat([f(y["box"]), f(y["out"]) + neg(f(z))], 1))
    cross = A.T.unsqueeze(0) * (f(z) / 2).unsqueeze(1)  # column p_j gets z_j a_j / 2
    Svv[:, :, nf:] += cross
    Svv[:, nf:, :] += cross.transpose(1, 2)
    Svv += (A.T.unsqueeze(0) * f(y["pre"]).unsqueeze(1)) @ A
    S = torch.zeros(B, N + 1, N + 1, dtype=torch.float64, device=z.device)
    S[:, 0, 0] = s00
    S[:, 0, 1:] = s / 2
    S[:, 1:, 0] = s / 2
    S[:, 1:, 1:] = Svv
    return S


def best_mu(S: torch.Tensor, T: float) -> torch.Tensor:
    """mu (B,) maximising mu + T min(0, lambda_min(S - mu e_0 e_0^T)), from the secular
    equation of the bordered matrix. Heuristic only: the result is checked by `certified`."""
    s00, s, Svv = S[:, 0, 0], S[:, 1:, 0], S[:, 1:, 1:]
    d, Q = torch.linalg.eigh(Svv)
    w = (Q.transpose(1, 2) @ s.unsqueeze(2)).squeeze(2) ** 2
    scale = 1.0 + d.abs().max(1).values + s.abs().sum(1)

    def slope(lam):  # d/dlam of the bound as a function of lambda_min = lam <= 0
        return T - 1 - (w / (d - lam.unsqueeze(1)) ** 2).sum(1)

    top = torch.minimum(d[:, 0], torch.zeros_like(s00)) - 1e-9 * scale
    top = torch.where(d[:, 0] > 0, torch.zeros_like(top), top)
    low = top - scale
    for _ in range(60):  # push `low` down until the bound still rises there
        bad = slope(low) < 0
        if not bad.any():
            break
        low = torch.where(bad, top - 2 * (top - low), low)
    for _ in range(100):
        mid = (low + top) / 2
        rising = slope(mid) > 0
        low, top = torch.where(rising, mid, low), torch.where(rising, top, mid)
    lam = torch.where(slope(top) >= 0, top, low)
    return s00 - lam - (w / (d - lam.unsqueeze(1))).sum(1)


def certified(prob: SdpProblem, mult: dict[str, torch.Tensor]):
    """Sound lower bounds (B,) of the rows' SDP minimum, in float64, and the eigenvector (B, N+1)
    of the most negative eigenvalue of the unscaled S (for the rank update) with that value."""
    prob = prob.to(torch.float64, prob.A.device)
    mult = project({k: v.to(prob.A.device) for k, v in mult.items()})
    S = dual_matrix(prob, mult)
    S_abs = dual_matrix(prob, mult, absolute=True)
    N = prob.n_vars
    t = torch.cat([prob.A.new_ones(1), prob.diag_bounds() * (1 + 1e-12)])
    T_plain = float(t.sum()) * (1 + (N + 8) * _EPS)
    best, vec, lam_plain = None, None, None
    for weights, T in ((torch.ones_like(t), T_plain), (t.sqrt(), float(N + 1))):
        Sw = S * weights.unsqueeze(1) * weights
        Sw_abs = S_abs * weights.unsqueeze(1) * weights * (1 + 4 * _EPS)
        mu = best_mu(Sw, T)
        Sw[:, 0, 0] -= mu
        Sw_abs[:, 0, 0] += mu.abs()
        lam, vecs = torch.linalg.eigh(Sw)
        lam_min = lam[:, 0] - _rounding(Sw, Sw_abs, N)
        bound = mu + T * lam_min.clamp(max=0)
        bound = bound - 8 * _EPS * (mu.abs() + T * lam_min.abs())
        if best is None:
            vec, lam_plain = vecs[:, :, 0], lam[:, 0]
            best = bound
        else:
            best = torch.maximum(best, bound)
    return torch.where(torch.isfinite(best), best, torch.full_like(best, float("-inf"))), vec, lam_plain


def _rounding(S: torch.Tensor, S_abs: torch.Tensor, N: int) -> torch.Tensor:
    """A bound on |lambda_min(S exact) - lambda_min computed|: entries of S are sums of at most
    N + 8 float64 products (error <= (N+10) eps sum|terms| each), and the symmetric eigensolver
    is backward stable (error <= c N eps ||S||); both over-estimated by a factor 8."""
    entries = (N + 10) * _EPS * torch.linalg.matrix_norm(S_abs)
    solver = (N + 1) * _EPS * torch.linalg.matrix_norm(S)
    return 8 * (entries + solver)
