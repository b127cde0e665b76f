"""Where to cut the input interval of an elementwise nonlinear op, and what the cut is worth
(branch and bound beyond ReLU, verifier/bab/relu_split.py).

A node's relaxation costs a lower bound through its gaps: where lam on the node's output is
positive the bound uses the lower line, and the most it can lose there is the largest gap
f(x) - (a_lo x + b_lo) over [l, u]; where lam is negative, the largest gap of the upper line.
Cutting [l, u] at p gives each child lines of its own, with smaller gaps. The gain of a cut is
the lam-weighted drop of the largest gaps, from the parent to the worse child (BaBSR's score
for ReLU is this with the upper line only: its largest gap is the intercept -l u / (u - l)).
Gaps are measured on a grid of each interval (the op's own evaluation and relaxation, so any
elementwise op with a relaxation gets them); the point is the best of a few candidates (a
third, the middle, two thirds of the interval, and the op's own point where it lies inside,
such as the inflection point of sigmoid and tanh or the jump of Sign).
"""
from __future__ import annotations

import torch

_GRID = 9  # points of an interval where the gaps are measured (ends included)
_FRACTIONS = (1 / 3, 1 / 2, 2 / 3)


def _largest_gaps(rule, node, l, u):
    """(lower, upper) (B, *shape): the largest gaps of the op's lines on [l, u], on a grid."""
    a_lo, b_lo, a_up, b_up = (t.unsqueeze(-1) for t in rule.relax(node, l, u))
    t = torch.linspace(0, 1, _GRID, dtype=l.dtype, device=l.device)
    x = l.unsqueeze(-1) + (u - l).unsqueeze(-1) * t
    fx = rule.forward(node, x)
    return (fx - (a_lo * x + b_lo)).amax(-1), (a_up * x + b_up - fx).amax(-1)


class ElementwiseBranching:
    """branch_gains for elementwise ops of one input (mixed into their rules)."""

    branchable = True
    special_point = None  # a point worth cutting at where it lies inside (l, u)

    def split_candidates(self, node, l, u) -> list[torch.Tensor]:
        points = [l + (u - l) * f for f in _FRACTIONS]
        if self.special_point is not None:
            inside = (l < self.special_point) & (u > self.special_point)
            points.append(torch.where(inside, torch.full_like(l, self.special_point), points[1]))
        return points

    @torch.no_grad()
    def branch_gains(self, node, weights, state):
        l, u = state.bounds[node.inputs[0]]
        lower_weight, upper_weight = weights
        gap_lo, gap_up = _largest_gaps(self, node, l, u)
        best_gain, best_point = None, None
        for p in self.split_candidates(node, l, u):
            left_lo, left_up = _largest_gaps(self, node, l, p)
            right_lo, right_up = _largest_gaps(self, node, p, u)
            gain = (lower_weight * (gap_lo - torch.maximum(left_lo, right_lo))
                    + upper_weight * (gap_up - torch.maximum(left_up, right_up)))
            gain = torch.nan_to_num(gain, nan=float("-inf"))
            if best_gain is None:
                best_gain, best_point = gain, p
            else:
                better = gain > best_gain
                best_gain, best_point = torch.where(better, gain, best_gain), torch.where(better, p, best_point)
        return [(best_gain, best_point)]
