"""The margin problem of a ReLU chain as data for the lifted SDP.

Variables v = [free inputs; unstable ReLU outputs] (N in all). Every other quantity of the
network is an exact affine function of v: fixed inputs (lo == hi) are constants, stably active
ReLUs (pre-activation lower bound >= 0) pass their input on, stably inactive ones (upper
bound <= 0) are zero. Unstable ReLU j has the pre-activation a_j . v + beta_j with bounds
[pl_j, pu_j], pl_j < 0 < pu_j, and a_j only reads variables before it. The spec rows are
c_i . v + c0_i.

The densified affine maps are exact in real arithmetic; float64 rounding in them is of the
order the unsat margin of `decide.refuted_disjuncts` covers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from verifier.errors import UserError
from verifier.graph.ir import Graph
from verifier.ops import RULES

# Ops that are affine in their one variable input; reshape-like ops are linear.
_AFFINE_OPS = {"matmul", "conv", "affine"}
_LINEAR_SHAPE_OPS = {"reshape", "transpose"}


class SdpUnsupported(UserError):
    """The graph is not a chain of affine maps and ReLUs, or is too large for the SDP."""


@dataclass
class SdpProblem:
    n_free: int  # free inputs: variables 0..n_free-1
    in_lo: torch.Tensor  # (n_free,)
    in_hi: torch.Tensor
    A: torch.Tensor  # (n_relu, N) pre-activation coefficients of the unstable ReLUs
    beta: torch.Tensor  # (n_relu,)
    pl: torch.Tensor  # (n_relu,) pre-activation bounds, pl < 0 < pu
    pu: torch.Tensor
    layers: list[slice]  # unstable ReLUs (indices into 0..n_relu-1) of each ReLU layer, in order
    c: torch.Tensor  # (m, N) objective rows
    c0: torch.Tensor  # (m,)
    centre_out: torch.Tensor  # (m,) objective at the box centre (an upper estimate of the minimum)
    free: torch.Tensor  # (n_in,) bool: which inputs are variables
    sources: list[tuple[str, torch.Tensor]]  # per ReLU layer: (relu node, flat bool mask of its unstable neurons)
    spec_rows: torch.Tensor  # (m, n_out) the rows C of the output that c, c0 come from

    @property
    def n_relu(self) -> int:
        return self.A.shape[0]

    @property
    def n_vars(self) -> int:
        return self.A.shape[1]

    def diag_bounds(self) -> torch.Tensor:
        """(N,) upper bounds of G_ii = E[v_i^2] over the SDP's feasible set: max(l^2, u^2) for
        inputs (lifted box), pu^2 for ReLU outputs (lifted z (pu - z) >= 0, z >= 0)."""
        inputs = torch.maximum(self.in_lo ** 2, self.in_hi ** 2)
        return torch.cat([inputs, self.pu ** 2])

    def to(self, dtype, device) -> "SdpProblem":
        move = lambda t: t.to(device=device, dtype=dtype)
        return SdpProblem(self.n_free, move(self.in_lo), move(self.in_hi), move(self.A), move(self.beta),
                          move(self.pl), move(self.pu), self.layers, move(self.c), move(self.c0),
                          move(self.centre_out), self.free, self.sources, move(self.spec_rows))

    def with_rows(self, rows: torch.Tensor) -> "SdpProblem":
        return SdpProblem(self.n_free, self.in_lo, self.in_hi, self.A, self.beta, self.pl, self.pu,
                          self.layers, self.c[rows], self.c0[rows], self.centre_out[rows], self.free,
                          self.sources, self.spec_rows[rows])

    def forward(self, x_free: torch.Tensor) -> torch.Tensor:
        """The exact variable vector v (B, N) for free inputs x_free (B, n_free)."""
        v = x_free.new_zeros(x_free.shape[0], self.n_vars)
        v[:, : self.n_free] = x_free
        for part in self.layers:
            cols = slice(self.n_free + part.start, self.n_free + part.stop)
            v[:, cols] = torch.relu(v @ self.A[part].T + self.beta[part])
        return v


def check_supported(graph: Graph) -> str | None:
    """None when the graph is a chain of affine ops and ReLUs; otherwise the reason why not."""
    previous = graph.input_name
    for node in graph.nodes:
        if node.op not in _AFFINE_OPS | _LINEAR_SHAPE_OPS | {"relu"}:
            return f"op '{node.op}' ({node.onnx_name or node.name}) is not affine or ReLU"
        if node.inputs != [previous]:
            return f"node {node.onnx_name or node.name} does not read only the node before it (not a chain)"
        previous = node.name
    if previous != graph.output_name:
        return "the output is not the last node of the chain"
    if not any(n.op == "relu" for n in graph.nodes):
        return "no ReLU"
    return None


def build_problem(graph: Graph, bounds: dict, lo: torch.Tensor, hi: torch.Tensor,
                  C: torch.Tensor) -> SdpProblem:
    """graph: float64; bounds: node name -> (l, u) of one box ((1, *shape) each, e.g. a
    BoundState's); lo, hi: (n_in,) the box; C: (m, n_out) spec rows."""
    reason = check_supported(graph)
    if reason is not None:
        raise SdpUnsupported(f"SDP: {reason}")
    lo, hi = lo.reshape(-1).to(torch.float64), hi.reshape(-1).to(torch.float64)
    free = hi > lo
    n_free = int(free.sum())
    unstable = {}
    for node in graph.nodes:
        if node.op == "relu":
            l, u = (t.reshape(-1) for t in bounds[node.inputs[0]])
            unstable[node.name] = (l < 0) & (u > 0)
    N = n_free + sum(int(m.sum()) for m in unstable.values())
    M = lo.new_zeros(lo.numel(), N)  # value = M v + m, per element of the current node
    M[free.nonzero().flatten(), torch.arange(n_free, device=lo.device)] = 1.0
    m = torch.where(free, torch.zeros_like(lo), lo)
    centre = (lo + hi) / 2
    rows = dict(A=[], beta=[], pl=[], pu=[])
    layers, next_var = [], n_free
    shape = graph.input_shape
    for node in graph.nodes:
        if node.op == "relu":
            l, u = (t.reshape(-1).to(torch.float64) for t in bounds[node.inputs[0]])
            mask = unstable[node.name]
            k = int(mask.sum())
            rows["A"].append(M[mask])
            rows["beta"].append(m[mask])
            rows["pl"].append(l[mask])
            rows["pu"].append(u[mask])
            layers.append(slice(next_var - n_free, next_var - n_free + k))
            M = torch.where((l >= 0).unsqueeze(1), M, torch.zeros_like(M))
            m = torch.where(l >= 0, m, torch.zeros_like(m))
            M[mask.nonzero().flatten(), torch.arange(next_var, next_var + k, device=lo.device)] = 1.0
            next_var += k
            centre = torch.relu(centre)
        else:
            M, m, centre = _apply_affine(node, shape, M, m, centre)
        shape = node.shape
    A = torch.cat(rows["A"]) if rows["A"] else lo.new_zeros(0, N)
    C = C.to(torch.float64)
    return SdpProblem(n_free, lo[free], hi[free], A, torch.cat(rows["beta"]), torch.cat(rows["pl"]),
                      torch.cat(rows["pu"]), layers, C @ M, C @ m, C @ centre, free,
                      [(name, mask) for name, mask in unstable.items()], C)


def _apply_affine(node, in_shape, M, m, centre):
    rule = RULES[node.op]
    N = M.shape[1]
    cols = M.T.reshape(N, *in_shape)
    linear = rule.linear_part(node, cols) if node.op in _AFFINE_OPS else rule.forward(node, cols)
    value = rule.forward(node, m.reshape(1, *in_shape))
    centre = rule.forward(node, centre.reshape(1, *in_shape))
    return linear.reshape(N, -1).T, value.reshape(-1), centre.reshape(-1)
