"""Planting a pocket: a small region around a chosen point of a box where the other class
wins by a calibrated margin, added to a trained network without changing it elsewhere.

Training alone does not carve such pockets into networks this small in a CPU budget (tried:
a hinge at the planted point against adversarial training either flipped the whole box or
left a wide basin that PGD walks into). So each pocket is built into the head of the trained
network (`models.build_model`: Linear-act-Linear-act-Linear over features psi):

- first head layer, 2k new units A: act(+-z_i) with z = D (psi - psi(c)), D k rows of the
  ZCA whitening of psi over the box (unit variance, uncorrelated, yet each row as close to
  one feature as whitening allows: for an MLP, about the input axes). Pooled convolutional
  features are concentrated and correlated: a pocket measured in raw features would cover
  much of the box;
- second head layer, one new unit B = act(1 - sum(A) / rho) (ReLU: an L1 ball of radius rho
  around c in whitened feature space; tanh and sigmoid: a smooth flat-topped version);
- output layer: w * B added to the other class's logit, w calibrated so that at the planted
  point p f_other - f_label equals the wanted depth exactly (in float64).

The centre c is p itself, except for S-shaped corner pockets (`_beyond_the_corner`): as in
SoundnessBench, a corner plant's violation then lives in a thin sliver at the box's vertex.

Outside its pocket a ReLU unit B is exactly 0 (and an S-shaped one saturated near 0), so
the gradient gives an attack no hint of it; `attacks.find_counterexample` checks that.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from verifier.soundness.data import CORNER, Box
from verifier.soundness.models import head_start

_VARIANCE_FLOOR = 1e-4  # relative to the largest variance of psi over the box
_SHARPNESS = 6.0
# ReLU pockets: B stays 1 while every |z_i| <= this, so that float32 rounding of z at the
# planted point (z = D psi - D psi(c) cancels large terms) does not shave the peak.
_RELU_FLAT_TOP = 1e-3  # S-shaped units: pre-activations reach +-6 (sigmoid 0.0025 / 0.9975) at the pocket edge


@dataclass(frozen=True)
class PocketConfig:
    radius: float = 0.25  # rho, in standard deviations of the whitened features over the box
    # k: a corner pocket watches (up to) every feature, else a random corner agreeing with the
    # planted one on the watched inputs would lie in it; an interior pocket watches a few, so
    # that it is a tube that branch and bound can find, yet that random points miss.
    corner_features: int = 24
    interior_features: int = 8
    feature_samples: int = 2048


@dataclass
class Pocket:
    point: np.ndarray  # the planted point p (flat float32): the witness
    label: int  # the class the box is trained to
    depth: float  # wanted f_other - f_label at p
    directions: np.ndarray  # D (k, F): rows of the whitening of psi over the box
    centre: np.ndarray  # D psi(c) (k,), c the pocket's centre
    weight: float = 0.0  # w, set by `calibrate`

    @property
    def target(self) -> int:
        return 1 - self.label


def head_input(model: nn.Sequential, x: torch.Tensor, input_shape) -> torch.Tensor:
    """psi(x): the flat features the head's first Linear reads, for flat inputs x (N, n)."""
    return model[:head_start(model)](x.reshape(len(x), *input_shape)).flatten(1)


@torch.no_grad()
def design_pocket(model: nn.Sequential, act: str, input_shape, box: Box, depth: float, config: PocketConfig,
                  gen: torch.Generator) -> Pocket:
    """The whitened feature directions the pocket around box.planted watches (k random rows of
    the ZCA whitening Sigma^(-1/2) of psi over random points and corners of the box), and its
    centre: psi at the planted point, except for an S-shaped corner pocket (below)."""
    model64 = _float64(model)
    lo, hi = torch.as_tensor(box.lo, dtype=torch.float64), torch.as_tensor(box.hi, dtype=torch.float64)
    samples = lo + (hi - lo) * torch.rand(config.feature_samples, lo.numel(), generator=gen, dtype=torch.float64)
    corners = torch.arange(len(samples)) % 4 == 0
    samples[corners] = torch.where(samples[corners] < (lo + hi) / 2, lo, hi)
    psi = head_input(model64, samples, input_shape)
    covariance = torch.cov(psi.T)
    variances, vectors = torch.linalg.eigh(covariance)
    # directions of tiny variance are not scaled up fully: float32 could not follow them
    floor = _VARIANCE_FLOOR * variances.max()
    whitening = (vectors / variances.clamp(min=floor).sqrt()) @ vectors.T
    rows = (covariance.diagonal() > floor).nonzero().flatten()  # dead features drop out
    k = config.corner_features if box.placement == CORNER else config.interior_features
    rows = rows[torch.randperm(len(rows), generator=gen)[:k]].sort().values
    directions = whitening[rows]
    centre_point = torch.as_tensor(box.planted, dtype=torch.float64)
    if box.placement == CORNER and act != "relu":
        centre_point = _beyond_the_corner(model64, input_shape, box, directions, config.radius)
    centre = directions @ head_input(model64, centre_point.unsqueeze(0), input_shape)[0]
    return Pocket(box.planted, box.label, depth, directions.numpy(), centre.numpy())


def _beyond_the_corner(model64, input_shape, box: Box, directions, radius: float) -> torch.Tensor:
    """A ReLU pocket is a cone peaking at the corner: the violation fades within a sliver of
    the faces. An S-shaped pocket is flat-topped, so its centre moves outward along the box's
    diagonal until the corner sits halfway down its edge (B = 1/2): there too the violation
    is confined to a thin sliver at the corner, which a box shrunk inward would lose."""
    corner = torch.as_tensor(box.planted, dtype=torch.float64)
    outward = corner - torch.as_tensor(box.centre, dtype=torch.float64)
    psi_corner = head_input(model64, corner.unsqueeze(0), input_shape)[0]

    def value_at_corner(t: float) -> float:
        psi_centre = head_input(model64, (corner + t * outward).unsqueeze(0), input_shape)[0]
        return float(_flat_top_value(directions @ (psi_corner - psi_centre), radius))

    near, far = 0.0, 1.0
    while value_at_corner(far) > 0.5 and far < 64:
        far *= 2
    for _ in range(50):
        mid = (near + far) / 2
        near, far = (mid, far) if value_at_corner(mid) > 0.5 else (near, mid)
    return corner + near * outward


def _flat_top_value(z: torch.Tensor, radius: float) -> torch.Tensor:
    """B at whitened offset z from the centre, for the S-shaped units (sigmoid form)."""
    gain = _SHARPNESS / radius
    a = torch.sigmoid(gain * torch.cat([z, -z]) - _SHARPNESS)
    return torch.sigmoid(_SHARPNESS * (1 - 2 * a.sum()))


def plant(model: nn.Sequential, act: str, pockets: list[Pocket], config: PocketConfig) -> nn.Sequential:
    """A float64 copy of the model with the pockets' units added to its head (output weights 0:
    `calibrate` sets them). The original units compute exactly what they did."""
    start = head_start(model)
    first, second, out = model[start], model[start + 2], model[start + 4]
    units = [_pocket_units(p, act, config.radius) for p in pockets]
    n_a = sum(len(u.a_bias) for u in units)
    new_first = _stack_rows(first, [u.a_weight for u in units], [u.a_bias for u in units])
    b_weight = torch.zeros(len(pockets), first.out_features + n_a, dtype=torch.float64)
    column = first.out_features
    for k, u in enumerate(units):
        b_weight[k, column:column + len(u.a_bias)] = torch.as_tensor(u.b_weight)
        column += len(u.a_bias)
    wide_second = _widen_columns(second, n_a)
    new_second = _stack_rows(wide_second, [b_weight.numpy()], [np.array([u.b_bias for u in units])])
    new_out = _widen_columns(out, len(pockets))
    planted = _float64(model)
    planted[start], planted[start + 2], planted[start + 4] = new_first, new_second, new_out
    planted.pocket_outputs = [(u.out_scale, u.out_shift) for u in units]
    planted.base_out = (new_out.weight.detach().clone(), new_out.bias.detach().clone())
    return planted


@torch.no_grad()
def calibrate(model: nn.Sequential, pockets: list[Pocket], input_shape) -> None:
    """Sets each pocket's output weight w so that f_other - f_label at its point is at least
    its depth for the exported network (weights rounded to float32) run both in float64 and
    in float32, and equal to it in one of them. The margins are affine in the weights: one linear solve per
    precision, then the larger weight of the two."""
    solved = [_solve_weights(model, pockets, input_shape, dtype) for dtype in (torch.float64, torch.float32)]
    weights = np.maximum(*solved)
    _set_output_weights(model, pockets, weights)
    for p, w in zip(pockets, weights):
        p.weight = float(w)


def _solve_weights(model, pockets: list[Pocket], input_shape, dtype) -> np.ndarray:
    points = torch.as_tensor(np.stack([p.point for p in pockets]), dtype=dtype)
    labels = torch.tensor([p.label for p in pockets])

    def margins(weights) -> torch.Tensor:
        _set_output_weights(model, pockets, weights)
        exported = copy.deepcopy(model).float().to(dtype)  # the weights as float32 holds them
        y = exported(points.reshape(len(points), *input_shape)).double()
        return (y.gather(1, (1 - labels).view(-1, 1)) - y.gather(1, labels.view(-1, 1))).squeeze(1)

    base = margins(np.zeros(len(pockets)))
    effect = torch.stack([margins(np.eye(len(pockets))[j]) - base for j in range(len(pockets))], 1)
    wanted = torch.tensor([p.depth for p in pockets], dtype=torch.float64)
    return torch.linalg.solve(effect, wanted - base).numpy()


def _set_output_weights(model, pockets: list[Pocket], weights) -> None:
    out = model[head_start(model) + 4]
    weight, bias = (t.clone() for t in model.base_out)
    first_new = weight.shape[1] - len(pockets)
    for k, (p, w) in enumerate(zip(pockets, weights)):
        scale, shift = model.pocket_outputs[k]
        weight[p.target, first_new + k] = w * scale
        bias[p.target] += w * shift
    out.weight.copy_(weight)
    out.bias.copy_(bias)


@dataclass
class _Units:
    a_weight: np.ndarray  # (2k, F)
    a_bias: np.ndarray  # (2k,)
    b_weight: np.ndarray  # (2k,): B's weights on its own A units
    b_bias: float
    out_scale: float  # B enters the output as w * (out_scale * B + out_shift)
    out_shift: float


def _pocket_units(p: Pocket, act: str, radius: float) -> _Units:
    """The A and B units of one pocket, for the given activation."""
    k = len(p.centre)
    rows = np.concatenate([p.directions, -p.directions])
    shift = np.concatenate([-p.centre, p.centre])
    if act == "relu":  # A = (|z_i| - flat)+ split in two, B = relu(1 - sum A / rho): exactly 0 outside
        return _Units(rows, shift - _RELU_FLAT_TOP, np.full(2 * k, -1 / radius), 1.0, 1.0, 0.0)
    # sigmoid: A = sigma(s (|z_i| - rho) / rho) ~ 1 outside, ~0 inside; B = sigma(s (1 - 2 sum A))
    gain = _SHARPNESS / radius
    a_weight, a_bias = gain * rows, gain * shift - _SHARPNESS
    b_weight, b_bias = np.full(2 * k, -2 * _SHARPNESS), _SHARPNESS
    if act == "sigmoid":
        return _Units(a_weight, a_bias, b_weight, b_bias, 1.0, 0.0)
    if act == "tanh":  # tanh(u / 2) = 2 sigma(u) - 1: halve pre-activations, read (T + 1) / 2 downstream
        return _Units(a_weight / 2, a_bias / 2, b_weight / 4, (b_bias + b_weight.sum() / 2) / 2, 0.5, 0.5)
    raise ValueError(f"unknown activation '{act}'")


def _float64(model: nn.Sequential) -> nn.Sequential:
    return copy.deepcopy(model).double().eval()


def _stack_rows(linear: nn.Linear, weights: list[np.ndarray], biases: list[np.ndarray]) -> nn.Linear:
    w = torch.cat([linear.weight.detach().double(), *(torch.as_tensor(x, dtype=torch.float64) for x in weights)])
    b = torch.cat([linear.bias.detach().double(), *(torch.as_tensor(x, dtype=torch.float64) for x in biases)])
    return _linear(w, b)


def _widen_columns(linear: nn.Linear, extra: int) -> nn.Linear:
    w = linear.weight.detach().double()
    w = torch.cat([w, w.new_zeros(w.shape[0], extra)], 1)
    return _linear(w, linear.bias.detach().double().clone())


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer
