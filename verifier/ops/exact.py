"""Ops evaluated exactly but with no useful relaxation: ArgMax, comparisons, Where with a
variable condition, Gather with variable indices, Cast to bool (and, until a bilinear rule
exists, the product or quotient of two variables).

Falsification evaluates them like onnxruntime does (values carry no gradient through them;
a zero gradient keeps the autograd graph connected). Verification does not try to prove
anything about a network holding one (Rule.no_relaxation): it attacks and answers unknown.
Their bound rules are still sound, for `cli.py bounds`: IBP gives each op's interval hull, and
the backward and forward rules treat the output as a constant within those bounds.
"""
from __future__ import annotations

import math

import torch

from verifier.ops.base import Rule


class _ZeroGradient(torch.autograd.Function):
    """`value`, with a zero gradient towards `inputs` (so autograd does not lose the graph)."""

    @staticmethod
    def forward(ctx, value, *inputs):
        ctx.shapes = [x.shape for x in inputs]
        return value

    @staticmethod
    def backward(ctx, grad):
        return (None, *(grad.new_zeros(s) for s in ctx.shapes))


def connected(value: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
    if any(x.requires_grad for x in inputs):
        return _ZeroGradient.apply(value.detach(), *inputs)
    return value


class Exact(Rule):
    nonlinear = True
    no_relaxation = True

    def forward(self, node, *xs):
        return connected(self.evaluate(node, *xs).to(xs[0].dtype), *xs)

    def evaluate(self, node, *xs):
        raise NotImplementedError

    def backward(self, node, lam, state, alpha=None):
        """The output as a constant within its own bounds."""
        l, u = state.bounds[node.name]
        positive, negative = lam.clamp(min=0), lam.clamp(max=0)
        bias = _dot(positive, l) + _dot(negative, u)
        return [None] * len(node.inputs), bias

    def forward_linear(self, node, fns, state):
        l, u = state.bounds[node.name]
        zeros = l.new_zeros(l.shape[0], fns[0][0].shape[1], *l.shape[1:])
        return zeros, l, zeros, u


def _dot(lam, bound):
    """sum over the per-sample dims of lam * bound, where lam = 0 counts 0 even at infinite bounds."""
    product = torch.where(lam == 0, 0.0, lam * bound.unsqueeze(1))
    return product.reshape(*product.shape[:2], -1).sum(-1)


def _constant_or_input(node, xs, key):
    """The operand `key` of the node: a constant tensor, or the next variable input."""
    return node.tensors[key] if key in node.tensors else xs.pop(0)


class ArgMax(Exact):
    """attrs: axis (of the per-sample shape), keepdims, last (select_last_index)."""

    def evaluate(self, node, x):
        axis = node.attrs["axis"] + 1
        if node.attrs["last"]:
            index = x.shape[axis] - 1 - x.flip(axis).argmax(axis, keepdim=True)
        else:
            index = x.argmax(axis, keepdim=True)  # torch: the first of several maxima
        return index if node.attrs["keepdims"] else index.squeeze(axis)

    def ibp(self, node, bounds):
        """Only an element whose upper bound reaches the largest lower bound can be the max."""
        l, u = bounds
        axis = node.attrs["axis"] + 1
        positions = torch.arange(l.shape[axis], dtype=l.dtype, device=l.device)
        positions = positions.reshape(-1, *([1] * (l.dim() - axis - 1)))
        possible = u >= l.amax(axis, keepdim=True)
        first = torch.where(possible, positions, float("inf")).amin(axis, keepdim=True)
        last = torch.where(possible, positions, float("-inf")).amax(axis, keepdim=True)
        if not node.attrs["keepdims"]:
            first, last = first.squeeze(axis), last.squeeze(axis)
        return first, last


_RELATIONS = {
    "equal": torch.eq, "less": torch.lt, "less_equal": torch.le, "greater": torch.gt,
    "greater_equal": torch.ge,
}


class Compare(Exact):
    """x R y for a relation R (attrs['relation']); either operand may be constant
    (tensors 'x' or 'y'). Output 1.0 or 0.0."""

    def evaluate(self, node, *xs):
        xs = list(xs)
        x, y = _constant_or_input(node, xs, "x"), _constant_or_input(node, xs, "y")
        return _RELATIONS[node.attrs["relation"]](x, y)

    def ibp(self, node, *bounds):
        bounds = list(bounds)
        (lx, ux), (ly, uy) = (self._bound(node, bounds, k) for k in ("x", "y"))
        relation = node.attrs["relation"]
        if relation == "equal":
            always = (lx == ux) & (ly == uy) & (lx == ly)
            never = (ux < ly) | (uy < lx)
        else:
            less = relation.startswith("less")
            (la, ua), (lb, ub) = ((lx, ux), (ly, uy)) if less else ((ly, uy), (lx, ux))
            strict = not relation.endswith("equal")  # a < b (strict) or a <= b
            always = ua < lb if strict else ua <= lb
            never = la >= ub if strict else la > ub
        lower = always.to(lx.dtype)
        upper = torch.where(never, 0.0, 1.0).to(lx.dtype)
        return lower, upper

    @staticmethod
    def _bound(node, bounds, key):
        if key in node.tensors:
            return node.tensors[key], node.tensors[key]
        return bounds.pop(0)


class Where(Exact):
    """condition ? x : y with a variable condition (inputs[0]); x and y variables or constants
    (tensors 'x', 'y')."""

    def evaluate(self, node, condition, *xs):
        xs = list(xs)
        x, y = _constant_or_input(node, xs, "x"), _constant_or_input(node, xs, "y")
        return torch.where(condition != 0, x, y)

    def ibp(self, node, condition, *bounds):
        bounds = list(bounds)
        (lx, ux), (ly, uy) = (Compare._bound(node, bounds, k) for k in ("x", "y"))
        lc, uc = condition
        true, false = (lc > 0) | (uc < 0), (lc == 0) & (uc == 0)
        lower = torch.where(true, lx, torch.where(false, ly, torch.minimum(lx, ly)))
        upper = torch.where(true, ux, torch.where(false, uy, torch.maximum(ux, uy)))
        return lower, upper


class Nonzero(Exact):
    """Cast to bool: 1.0 where x != 0."""

    def evaluate(self, node, x):
        return x != 0

    def ibp(self, node, bounds):
        l, u = bounds
        return ((l > 0) | (u < 0)).to(l.dtype), torch.where((l == 0) & (u == 0), 0.0, 1.0).to(l.dtype)


class GatherIndexed(Exact):
    """Gather along attrs['axis'] with variable indices (the last input, integer-valued);
    the data is the first input or the constant tensors['data']."""

    def evaluate(self, node, *xs):
        xs = list(xs)
        indices = xs.pop()
        data = node.tensors["data"] if "data" in node.tensors else xs.pop(0)
        batch = indices.shape[0]
        if data.dim() == len(node.attrs["data_shape"]):  # a constant: one copy for every sample
            data = data.unsqueeze(0).expand(batch, *data.shape)
        axis = node.attrs["axis"] + 1
        n = data.shape[axis]
        index = indices.long()
        index = torch.where(index < 0, index + n, index).reshape(batch, -1)
        before, after = data.shape[1:axis], data.shape[axis + 1:]
        flat = data.reshape(batch, math.prod(before), n, math.prod(after))
        picked = flat.gather(2, index[:, None, :, None].expand(-1, flat.shape[1], -1, flat.shape[3]))
        return picked.reshape(batch, *before, *indices.shape[1:], *after)

    def ibp(self, node, *bounds):
        """Any element along the axis may be picked: its hull, broadcast to the output."""
        bounds = list(bounds)
        batch = bounds.pop()[0].shape[0]  # the indices'
        if "data" in node.tensors:
            l = u = node.tensors["data"].unsqueeze(0)
        else:
            l, u = bounds.pop(0)
        axis = node.attrs["axis"] + 1
        index_rank = len(node.shape) - (l.dim() - 2)
        low, high = l.amin(axis, keepdim=True), u.amax(axis, keepdim=True)
        target = (low.shape[0], *low.shape[1:axis], *([1] * index_rank), *low.shape[axis + 1:])
        shape = (batch, *node.shape)
        return low.reshape(target).expand(shape), high.reshape(target).expand(shape)
