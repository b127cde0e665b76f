"""The interface every op family implements, and helpers shared by the rules.

Conventions: a value or bound of a node is a tensor (B, *shape); a linear-bound coefficient
`lam` on a node is a tensor (B, m, *shape), for m bound rows. `backward` maps the lam on a
node's output to one lam per variable input (None where nothing flows) plus a bias (B, m)
(or None), so that lam . out >= sum_i lam_i . in_i + bias holds over the input bounds.
"""
from __future__ import annotations

import torch


class Rule:
    nonlinear = False  # needs bounds on its inputs for a relaxation
    exact = False  # float32 computes it without rounding (it moves or selects values)
    optimisable = False  # has relaxation parameters for alpha-CROWN (see initial_alpha)
    uses_input_bounds = False  # float_error takes the exact inputs' bounds as a fourth argument

    def forward(self, node, *xs):
        raise NotImplementedError

    def ibp(self, node, *bounds):
        raise NotImplementedError

    def backward(self, node, lam, state, alpha=None):
        raise NotImplementedError

    def initial_alpha(self, node, state, m: int):
        """Parameters in [0, 1], (B, m, *shape, k), that give the rule's CROWN relaxation; its
        backward rule receives them (or the optimised ones) as `alpha`."""
        raise NotImplementedError

    def float_error(self, node, errors, magnitudes):
        """A bound (B, *shape) on |float32 result - exact result| of this node as onnxruntime
        computes it, from bounds on each input's error (errors[i]) and on the magnitude of each
        float32 input (magnitudes[i] >= |exact input| + errors[i]). See verifier/float_error.py.
        An op without this rule can never be part of an unsat answer."""
        raise NotImplementedError(f"no float32 error rule for op '{node.op}'")

    # Evaluated exactly, but with no useful relaxation (ArgMax, Equal, index computations):
    # verification attacks the network and answers unknown, naming the op, before any bound
    # is computed. Its IBP and backward rules are still sound (`cli.py bounds` works).
    no_relaxation = False
    # Only the input elements whose bounds straddle 0 need CROWN's tighter bounds (the
    # relaxation is exact elsewhere: ReLU, Sign).
    tightens_straddling_rows_only = False
    # Branch and bound may cut this node's input intervals (see branch_gains); ReLU has its own
    # split rule (verifier/bab/relu_split.py).
    branchable = False

    def branch_gains(self, node, weights, state):
        """What splitting one input element is worth: per input, None or (gain, point), each
        (B, *input shape): the estimated rise of a lower bound whose lam on this node's output
        has positive part summing to weights[0] and negative part to -weights[1] (each
        (B, *shape), over the rows still open) when the element's interval [l, u] is cut at
        `point` into [l, point] and [point, u], lam held fixed (the rise of the worse child)."""
        raise NotImplementedError


class LinearRule(Rule):
    """An affine op: IBP by centre and radius, through `forward` and `forward_abs`."""

    def forward_abs(self, node, r):
        """The op's linear part with absolute coefficients applied to a radius r >= 0."""
        raise NotImplementedError

    def linear_part(self, node, x):
        """The op without its constant term."""
        raise NotImplementedError

    def ibp(self, node, *bounds):
        (l, u), = bounds
        centre = self.forward(node, (l + u) / 2)
        radius = self.forward_abs(node, (u - l) / 2)
        lower, upper = centre - radius, centre + radius
        if torch.isnan(lower).any() or torch.isnan(upper).any():  # infinite input bounds
            return self._ibp_unbounded(node, l, u)
        return lower, upper

    def _ibp_unbounded(self, node, l, u):
        """IBP where some input bounds are infinite (inf - inf gives NaN above): the finite
        part as usual; a lower bound is -inf where a -inf lower end enters with a positive
        weight or a +inf upper end with a negative one (the upper bound mirrored)."""
        below, above = (l == float("-inf")).to(l.dtype), (u == float("inf")).to(l.dtype)
        lower, upper = self.ibp(node, (torch.where(below > 0, 0.0, l), torch.where(above > 0, 0.0, u)))

        def positive(t):  # sum of the positive weights on t >= 0; then of the negative ones
            size, signed = self.forward_abs(node, t), self.linear_part(node, t)
            return (size + signed) > 0, (size - signed) > 0

        (below_up, below_down), (above_up, above_down) = positive(below), positive(above)
        return (lower.masked_fill(below_up | above_down, float("-inf")),
                upper.masked_fill(above_up | below_down, float("inf")))

    def forward_linear(self, node, fns, state):
        """By centre and radius functions: |op|(radius) bounds the deviation pointwise."""
        (a_lo, b_lo, a_up, b_up), = fns
        a_c = on_coefficients(lambda t: self.linear_part(node, t), (a_lo + a_up) / 2)
        a_r = on_coefficients(lambda t: self.forward_abs(node, t), (a_up - a_lo) / 2)
        b_c = self.forward(node, (b_lo + b_up) / 2)
        b_r = self.forward_abs(node, (b_up - b_lo) / 2)
        return a_c - a_r, b_c - b_r, a_c + a_r, b_c + b_r


class NonnegativeLinearRule(LinearRule):
    """A linear op with no constant term and nonnegative coefficients (moving or summing
    values): its linear part and its absolute form are the op itself."""

    def linear_part(self, node, x):
        return self.forward(node, x)

    def forward_abs(self, node, r):
        return self.forward(node, r)


def on_coefficients(op, a: torch.Tensor) -> torch.Tensor:
    """Apply a per-sample op to coefficients (B, n_in, *shape), folding n_in into the batch."""
    out = op(a.reshape(a.shape[0] * a.shape[1], *a.shape[2:]))
    return out.reshape(a.shape[0], a.shape[1], *out.shape[1:])


def sum_to_shape(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Sum the broadcast dimensions of t away so that it has `shape` (a trailing match)."""
    extra = t.dim() - len(shape)
    if extra > 0:
        t = t.sum(dim=tuple(range(extra)))
    dims = tuple(i for i, s in enumerate(shape) if s == 1 and t.shape[i] != 1)
    if dims:
        t = t.sum(dim=dims, keepdim=True)
    return t


def lam_to_input_shape(lam: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Reduce lam (B, m, *out) onto a broadcast input of per-sample shape in_shape."""
    return sum_to_shape(lam, (lam.shape[0], lam.shape[1], *in_shape))


def bias_of(lam: torch.Tensor, const: torch.Tensor) -> torch.Tensor:
    """lam . const summed over the per-sample dims: (B, m)."""
    if const.numel() == 1:  # a one-element constant of any rank, even beside a scalar node
        const = const.reshape(())
    return lam.reshape(*lam.shape[:2], -1) @ const.broadcast_to(lam.shape[2:]).flatten()
