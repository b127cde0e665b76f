"""alpha-CROWN and beta-CROWN: optimise the ReLU lower slopes (alpha in [0, 1]) and the split
multipliers (beta >= 0) of the backward pass from the output, with Adam, per bound row.

Every (alpha, beta) gives a sound bound, so the best bound seen for each row is kept. The
target is the spec: rows C y compared with thresholds d, grouped into disjuncts; a disjunct
is refuted when one of its rows' lower bound exceeds its threshold, so the loss pushes up the
best row of each disjunct that is not yet refuted.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from verifier.boundprop.adam import Adam
from verifier.boundprop.engine import BoundState, adaptive_slopes, keep_where, output_lower_bounds, parameter_nodes


@dataclass
class Spec:
    """Stacked output rows: C (m, n_out), thresholds d (m,), owner (m,) = disjunct index.
    C may also be (B, m, n_out): rows of their own for each of B domains. eps (m,): the float
    margin each row's lower bound must beat d by for unsat (verifier.float_error); None in
    specs that only steer a search (no unsat can come from them)."""

    C: torch.Tensor
    d: torch.Tensor
    owner: torch.Tensor
    n_disjuncts: int
    eps: torch.Tensor | None = None

    @property
    def threshold(self) -> torch.Tensor:
        """What each row's lower bound has to beat: d + eps."""
        return self.d if self.eps is None else self.d + self.eps.to(self.d)

    def to(self, dtype: torch.dtype, raise_thresholds_by: float = 0.0) -> "Spec":
        """This spec in another precision, optionally with every threshold raised (a target for
        bounds that must later be certified with some room to spare)."""
        return Spec(self.C.to(dtype), (self.d + raise_thresholds_by).to(dtype), self.owner, self.n_disjuncts,
                    self.eps)

    def rows_of(self, k: int) -> torch.Tensor:
        return (self.owner == k).nonzero().flatten()

    def only_disjunct(self, k: int) -> "Spec":
        rows = self.rows_of(k)
        return Spec(self.C[rows], self.d[rows], torch.zeros_like(rows), 1,
                    None if self.eps is None else self.eps[rows])

    def disjunct_margins(self, lower: torch.Tensor) -> torch.Tensor:
        """(B, K): the best row's (lower bound - threshold) for each disjunct."""
        gap = lower - self.threshold
        out = gap.new_full((gap.shape[0], self.n_disjuncts), float("-inf"))
        return out.scatter_reduce(1, self.owner.expand_as(gap), gap, "amax")


def relu_nodes(state: BoundState):
    return [n for n in state.graph.nodes if n.op == "relu"]


def initial_alphas(state: BoundState, m: int) -> dict[str, torch.Tensor]:
    """The adaptive CROWN slopes (1 where u > -l, else 0), one per (domain, row, neuron), and
    the CROWN parameters of the other optimisable nodes."""
    return adaptive_slopes(state, parameter_nodes(state.graph), m)


def initial_betas(state: BoundState, m: int) -> dict[str, torch.Tensor]:
    """Zero split multipliers for every ReLU pre-activation, one per (domain, row, neuron)."""
    betas = {}
    for node in relu_nodes(state):
        l = state.bounds[node.inputs[0]][0]
        betas[node.inputs[0]] = l.new_zeros(l.shape[0], m, *l.shape[1:])
    return betas


def split_signs(state: BoundState, splits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """splits: relu node -> (B, *shape) int8 in {-1 inactive, 0 free, +1 active}.
    Returns, per pre-activation, s = -1 for active and +1 for inactive splits ((B, 1, *shape)),
    so that each split reads s * x <= 0."""
    by_name = state.graph.by_name
    return {by_name[name].inputs[0]: (-split.to(state.lo.dtype)).unsqueeze(1)
            for name, split in splits.items() if (split != 0).any()}


# Cuts of branch and bound beyond ReLU: per tensor, (B, *shape) int8 with these bits set where
# the element's lower bound l (x >= l) or upper bound u (x <= u) is a cut of the domain.
LOWER_CUT, UPPER_CUT = 1, 2


def cut_key(name: str) -> tuple[str, str]:
    """The key of a tensor's cut multipliers among the betas (ReLU splits use the name)."""
    return ("cut", name)


def cut_terms(state: BoundState, cuts: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per cut tensor, (signs, points), each (B, 1, *shape, 2): the cuts written s (x - p) <= 0,
    s = -1 and p = l for a lower cut, s = +1 and p = u for an upper one, s = 0 where none."""
    terms = {}
    for name, cut in cuts.items():
        if not cut.any():
            continue
        lower, upper = ((cut & bit) != 0 for bit in (LOWER_CUT, UPPER_CUT))
        signs = torch.stack([-lower.to(state.lo.dtype), upper.to(state.lo.dtype)], -1).unsqueeze(1)
        points = torch.stack(state.bounds[name], -1).unsqueeze(1)
        terms[name] = (signs, torch.where(signs != 0, points, 0.0))  # no inf * 0 where no cut
    return terms


def _multiplier_terms(betas, signs, cuts):
    """The lam offsets (beta s on each split or cut tensor) and, per cut tensor, its constant
    term -sum beta s p (B, m)."""
    offsets = {name: betas[name] * s for name, s in signs.items()}
    constants = {}
    for name, (s, p) in cuts.items():
        beta = betas[cut_key(name)]
        offset = (beta * s).sum(-1)
        offsets[name] = offsets[name] + offset if name in offsets else offset
        constants[name] = -(beta * s * p).flatten(2).sum(-1)
    return offsets, constants


def optimize_bounds(state: BoundState, spec: Spec, iterations: int,
                    alphas: dict[str, torch.Tensor] | None = None,
                    betas: dict[str, torch.Tensor] | None = None,
                    splits: dict[str, torch.Tensor] | None = None,
                    lr_alpha: float = 0.1, lr_beta: float = 0.05,
                    record: dict | None = None, cuts: dict[str, torch.Tensor] | None = None):
    """Returns (best lower bounds (B, m), the alphas and betas that gave them, row by row);
    fills `record` with the lams of the last pass (for branching). With iterations == 0 it is
    plain CROWN with the given slopes. Stops early once every disjunct is refuted in every
    domain; checks the state's deadline after every pass. `cuts` (see cut_terms) get
    multipliers (B, m, *shape, 2) among the betas, under cut_key(name)."""
    B, m = state.batch, spec.C.shape[-2]
    C = spec.C if spec.C.dim() == 3 else spec.C.expand(B, -1, -1)
    alphas = alphas if alphas is not None else initial_alphas(state, m)
    signs = split_signs(state, splits or {})
    betas = betas if betas is not None else {}
    for name, s in signs.items():
        if name not in betas:
            betas[name] = s.new_zeros(B, m, *s.shape[2:])
    cut_signs = cut_terms(state, cuts or {})
    for name, (s, _) in cut_signs.items():
        if cut_key(name) not in betas:
            betas[cut_key(name)] = s.new_zeros(B, m, *s.shape[2:])
    params = [a.requires_grad_(True) for a in alphas.values()]
    beta_params = [betas[name].requires_grad_(True) for name in [*signs, *map(cut_key, cut_signs)]]
    state.alphas = alphas
    groups = [(params, lr_alpha)]
    if beta_params:
        groups.append((beta_params, lr_beta))
    optimizer = Adam(groups) if iterations > 0 else None
    best = best_alphas = best_betas = None
    for step in range(iterations + 1):
        with torch.set_grad_enabled(step < iterations):
            state.lam_offsets, constants = _multiplier_terms(betas, signs, cut_signs)
            seen = dict(record or {}, **dict.fromkeys(constants))
            lower = output_lower_bounds(state, C, seen)
            if record is not None:
                record.update({k: seen[k] for k in record})
            for name, constant in constants.items():
                # a cut's term beta s (x - p) is sound only whole: its constant counts only
                # where the backward pass reached x and took beta s x in
                if seen[name] is not None:
                    lower = lower + constant
        if best is None:
            best = lower.detach()
            best_alphas = {k: a.detach().clone() for k, a in alphas.items()}
            best_betas = {k: b.detach().clone() for k, b in betas.items()}
        else:
            improved = lower.detach() > best
            best = torch.where(improved, lower.detach(), best)
            keep_where(best_alphas, alphas, improved)
            keep_where(best_betas, betas, improved)
        state.check_time()
        if step == iterations or bool((spec.disjunct_margins(best) > 0).all()) or not lower.requires_grad:
            break
        loss = -spec.disjunct_margins(lower).clamp(max=0).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for a in params:
                a.clamp_(0, 1)
            for b in beta_params:
                b.clamp_(min=0)
    for p in params + beta_params:
        p.requires_grad_(False)
    state.lam_offsets = {}
    return best, best_alphas, best_betas
