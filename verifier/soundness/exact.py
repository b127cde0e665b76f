"""The exact proof behind a control instance: a mixed-integer program (big-M encoding of every
ReLU, float64, HiGHS through scipy.optimize.milp) over the box. The instance is a control
(truth: unsat) only when HiGHS proves, to the end and within its time limit, that no input of
the box reaches f_other - f_label >= -PROOF_MARGIN (the MILP with that row added is
infeasible), i.e. the maximum is below -PROOF_MARGIN.

Independent of the verifier: the network is read from the torch model (weights as exported,
float32, taken as float64), each linear piece (Linear, Conv2d, AvgPool2d, Flatten, the
residual Add) turned into a dense matrix by applying it to the identity, and that reading is
checked against torch on random inputs. Pre-activation bounds for the big-M constants:
interval arithmetic, then LP relaxations layer by layer, each widened against rounding.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import Bounds, LinearConstraint, milp
from torch import nn

from verifier.soundness.models import ResidualBlock

PROOF_MARGIN = 1e-3
TIME_LIMIT = 30.0  # seconds for the whole proof (bounds and MILP)
_LINEAR_MODULES = (nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.Flatten)
_INPUT = -1  # source index of the network input
_SLACK = 1e-7  # relative widening of interval bounds (covers float64 rounding)
_LP_SLACK = 1e-6  # relative widening of LP bounds (covers HiGHS's tolerances)


# ---------------------------------------------------------------- the network as ReLU layers

@dataclass
class AffineExpr:
    """sum over sources s of terms[s] @ v_s + bias; v_-1 is the input, v_j the j-th ReLU layer."""

    terms: dict[int, np.ndarray]
    bias: np.ndarray

    @staticmethod
    def identity(source: int, size: int) -> "AffineExpr":
        return AffineExpr({source: np.eye(size)}, np.zeros(size))

    def then(self, matrix: np.ndarray, offset: np.ndarray) -> "AffineExpr":
        return AffineExpr({s: matrix @ m for s, m in self.terms.items()}, matrix @ self.bias + offset)

    def plus(self, other: "AffineExpr") -> "AffineExpr":
        terms = dict(self.terms)
        for s, m in other.terms.items():
            terms[s] = terms[s] + m if s in terms else m
        return AffineExpr(terms, self.bias + other.bias)


@dataclass
class ReluNetwork:
    """v_j = relu(layers[j]) for each ReLU layer, in order; the output is affine in them."""

    n_inputs: int
    layers: list[AffineExpr] = field(default_factory=list)
    output: AffineExpr | None = None

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Outputs (N, n_out) for inputs x (N, n_inputs), float64."""
        values = {_INPUT: x}
        for j, pre in enumerate(self.layers):
            values[j] = np.maximum(_apply_expr(pre, values), 0)
        return _apply_expr(self.output, values)

    def add_relu(self, pre: AffineExpr) -> AffineExpr:
        self.layers.append(pre)
        return AffineExpr.identity(len(self.layers) - 1, len(pre.bias))


def _apply_expr(expr: AffineExpr, values) -> np.ndarray:
    return sum(values[s] @ m.T for s, m in expr.terms.items()) + expr.bias


def relu_network(model: nn.Sequential, input_shape) -> ReluNetwork:
    """Reads a ReLU network built by `models.build_model` (its weights taken as float64)."""
    model = copy.deepcopy(model).double().eval()
    net = ReluNetwork(int(np.prod(input_shape)))
    expr, shape = AffineExpr.identity(_INPUT, net.n_inputs), tuple(input_shape)
    for module in model:
        if isinstance(module, nn.ReLU):
            expr = net.add_relu(expr)
        elif isinstance(module, ResidualBlock) and isinstance(module.act1, nn.ReLU):
            inner, _ = _apply(module.conv1, expr, shape)
            branch, _ = _apply(module.conv2, net.add_relu(inner), shape)
            expr = net.add_relu(branch.plus(expr))
        elif isinstance(module, _LINEAR_MODULES):
            expr, shape = _apply(module, expr, shape)
        else:
            raise ValueError(f"no exact encoding for {type(module).__name__} (ReLU networks only)")
    net.output = expr
    return net


@torch.no_grad()
def _apply(module: nn.Module, expr: AffineExpr, shape) -> tuple[AffineExpr, tuple]:
    """The affine module composed after expr: its dense matrix from the identity basis."""
    n = int(np.prod(shape))
    zero = module(torch.zeros(1, *shape, dtype=torch.float64))
    basis = module(torch.eye(n, dtype=torch.float64).reshape(n, *shape)) - zero
    matrix = basis.reshape(n, -1).T.numpy()
    return expr.then(matrix, zero.reshape(-1).numpy()), tuple(zero.shape[1:])


# ---------------------------------------------------------------- bounds and the MILP

def interval_bounds(net: ReluNetwork, lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sound bounds (l, u) of every ReLU layer's pre-activation, widened against rounding."""
    values = {_INPUT: (lo, hi)}
    bounds = []
    for j, pre in enumerate(net.layers):
        l, u = _interval(pre, values)
        bounds.append((l, u))
        values[j] = (np.maximum(l, 0), np.maximum(u, 0))
    return bounds


def _interval(expr: AffineExpr, values) -> tuple[np.ndarray, np.ndarray]:
    l, u = expr.bias.copy(), expr.bias.copy()
    for s, m in expr.terms.items():
        vl, vu = values[s]
        pos, neg = np.maximum(m, 0), np.minimum(m, 0)
        l += pos @ vl + neg @ vu
        u += pos @ vu + neg @ vl
    return _widen(l, u)


def _widen(l, u, relative: float = _SLACK):
    slack = relative * (1 + np.maximum(np.abs(l), np.abs(u)))
    return l - slack, u + slack


def tightened_bounds(net: ReluNetwork, lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Interval bounds, then layer by layer: each unstable neuron's pre-activation minimised and
    maximised by the LP relaxation of the layers before it (sound: every LP is a relaxation)."""
    bounds = interval_bounds(net, lo, hi)
    for j in range(1, len(net.layers)):
        l, u = bounds[j]
        unstable = np.nonzero((l < 0) & (u > 0))[0]
        if len(unstable) == 0:
            continue
        program = _Encoding(net, lo, hi, bounds[:j])
        coeffs, bias = program.coefficients(net.layers[j])
        l, u = l.copy(), u.copy()
        for i in unstable:
            low, high = program.lp_min(coeffs[i]), -program.lp_min(-coeffs[i])
            new_l, new_u = _widen(np.array([low + bias[i]]), np.array([high + bias[i]]), _LP_SLACK)
            l[i], u[i] = max(l[i], new_l[0]), min(u[i], new_u[0])
        bounds[j] = (l, u)
        bounds[j + 1:] = _propagate(net, lo, hi, bounds[:j + 1])
    return bounds


def _propagate(net: ReluNetwork, lo, hi, known) -> list[tuple[np.ndarray, np.ndarray]]:
    """Interval bounds of the layers after those in `known`."""
    values = {_INPUT: (lo, hi)}
    for j, (l, u) in enumerate(known):
        values[j] = (np.maximum(l, 0), np.maximum(u, 0))
    rest = []
    for j in range(len(known), len(net.layers)):
        l, u = _interval(net.layers[j], values)
        rest.append((l, u))
        values[j] = (np.maximum(l, 0), np.maximum(u, 0))
    return rest


@dataclass
class Proof:
    proved: bool  # f_other - f_label < -PROOF_MARGIN on the whole box
    status: str  # "infeasible" when proved, else what HiGHS said
    reached: float  # when not proved: the largest f_other - f_label HiGHS found (nan if none)
    seconds: float


class _Encoding:
    """Variables: the input x, the outputs of the encoded ReLU layers (those with bounds), one
    binary per unstable neuron. Rows: per unstable neuron h >= pre, h <= pre - l (1 - a),
    h <= u a (h >= 0 and h <= max(u, 0) are variable bounds); per active one h = pre."""

    def __init__(self, net: ReluNetwork, lo, hi, bounds):
        self.offsets = {_INPUT: 0}
        position = net.n_inputs
        for j, (l, _) in enumerate(bounds):
            self.offsets[j] = position
            position += len(l)
        self.n_continuous = position
        unstable = [(l < 0) & (u > 0) for l, u in bounds]
        self.n_binary = int(sum(m.sum() for m in unstable))
        self.size = self.n_continuous + self.n_binary
        self.var_lo = np.concatenate([lo] + [np.maximum(l, 0) for l, _ in bounds] + [np.zeros(self.n_binary)])
        self.var_hi = np.concatenate([hi] + [np.maximum(u, 0) for _, u in bounds] + [np.ones(self.n_binary)])
        rows, row_lo, row_hi = [], [], []
        binary = self.n_continuous
        for j, (l, u) in enumerate(bounds):
            coeffs, bias = self.coefficients(net.layers[j])
            h = np.zeros_like(coeffs)
            h[np.arange(len(l)), self.offsets[j] + np.arange(len(l))] = 1.0
            diff = h - coeffs  # h - (pre - bias)
            for i in np.nonzero(l >= 0)[0]:
                rows.append(diff[i]); row_lo.append(bias[i]); row_hi.append(bias[i])
            for i in np.nonzero(unstable[j])[0]:
                below, cap = diff[i].copy(), h[i].copy()
                below[binary], cap[binary] = -l[i], -u[i]
                rows += [diff[i], below, cap]
                row_lo += [bias[i], -np.inf, -np.inf]
                row_hi += [np.inf, bias[i] - l[i], 0.0]
                binary += 1
        self.matrix = sp.csr_matrix(np.array(rows)) if rows else sp.csr_matrix((0, self.size))
        self.row_lo, self.row_hi = np.array(row_lo), np.array(row_hi)

    def coefficients(self, expr: AffineExpr) -> tuple[np.ndarray, np.ndarray]:
        """expr as a dense (m, size) matrix over the variables, and its constant."""
        coeffs = np.zeros((len(expr.bias), self.size))
        for s, m in expr.terms.items():
            coeffs[:, self.offsets[s]:self.offsets[s] + m.shape[1]] += m
        return coeffs, expr.bias

    def _solve(self, c: np.ndarray, integral: bool, time_limit: float | None = None):
        integrality = np.concatenate([np.zeros(self.n_continuous), np.full(self.n_binary, float(integral))])
        options = {"disp": False}
        if integral:
            options["time_limit"] = time_limit
        constraints = LinearConstraint(self.matrix, self.row_lo, self.row_hi) if self.matrix.shape[0] else ()
        return milp(c, integrality=integrality, bounds=Bounds(self.var_lo, self.var_hi),
                    constraints=constraints, options=options)

    def lp_min(self, c: np.ndarray) -> float:
        """min c . v over the LP relaxation; -inf unless solved to optimality."""
        res = self._solve(c, integral=False)
        return float(res.fun) if res.status == 0 else -np.inf

    def add_row(self, row: np.ndarray, low: float, high: float) -> None:
        self.matrix = sp.vstack([self.matrix, sp.csr_matrix(row.reshape(1, -1))]).tocsr()
        self.row_lo, self.row_hi = np.append(self.row_lo, low), np.append(self.row_hi, high)

    def milp(self, c: np.ndarray, time_limit: float):
        return self._solve(c, integral=True, time_limit=time_limit)


def prove_robust(model: nn.Sequential, input_shape, lo: np.ndarray, hi: np.ndarray, label: int,
                 time_limit: float = TIME_LIMIT) -> Proof:
    """Decides whether f_other - f_label < -PROOF_MARGIN on all of [lo, hi]: the MILP with the
    row f_other - f_label >= -PROOF_MARGIN added must be infeasible (HiGHS solves it to the end)."""
    started = time.monotonic()
    net = relu_network(model, input_shape)
    _check_reading(model, net, input_shape, lo, hi)
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    program = _Encoding(net, lo, hi, tightened_bounds(net, lo, hi))
    direction = np.zeros(len(net.output.bias))
    direction[1 - label], direction[label] = 1.0, -1.0
    coeffs, bias = program.coefficients(net.output)
    c, constant = direction @ coeffs, float(direction @ bias)
    program.add_row(c, -PROOF_MARGIN - constant, np.inf)
    res = program.milp(-c, max(1.0, time_limit - (time.monotonic() - started)))
    seconds = time.monotonic() - started
    if res.status == 2:  # infeasible: no input of the box reaches -PROOF_MARGIN
        return Proof(True, "infeasible", float("nan"), seconds)
    if res.x is None:
        return Proof(False, res.message, float("nan"), seconds)
    return Proof(False, "a point reaches the margin", float(-res.fun + constant), seconds)


@torch.no_grad()
def _check_reading(model, net: ReluNetwork, input_shape, lo, hi, samples: int = 16) -> None:
    """The ReLU-layer reading of the network must compute what torch computes (float64)."""
    model64 = copy.deepcopy(model).double().eval()
    rng = np.random.default_rng(0)
    x = lo + (hi - lo) * rng.random((samples, len(lo)))
    expected = model64(torch.as_tensor(x).reshape(samples, *input_shape)).numpy()
    got = net.evaluate(x)
    if np.abs(got - expected).max() > 1e-9 * (1 + np.abs(expected).max()):
        raise AssertionError("the exact encoding's reading of the network disagrees with torch")
