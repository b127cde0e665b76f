"""Rigorous bound propagation on the checker's network.

Every bound returned holds for every network whose every op result may be off by its float32
rounding bound r (float_error.py, from the magnitudes of the op's input bounds in the domain):
the exact network and the float32 one onnxruntime runs are two of them. IBP widens each result
by r, forward mode moves its functions apart by r, the backward pass charges |lam| . r at each
op (so cancellation later on is accounted for). Computations are float64 with
explicit error terms (rounding.py): a computed lam_hat = fl(A^T lam) is off by at most
gamma_k |lam| |A| elementwise, so lam . x >= lam_hat . x - gamma_k |lam| . (|A| mag_x), with
mag_x a bound on |x| for the exact values x. Those magnitudes come from the region's root
bounds (`Root`), valid for every sub-box and every split domain of the region. Interval bounds
evaluate the op at a computed point, so they take their magnitudes from their own bounds.
Bounds of sub-boxes are not intersected with the root's: the relaxations then stay the ones the
verifier used (tighter intervals can change an adaptive slope and loosen a bound).

Conventions: value i is the input of primitive i (value 0: the network input); a batch holds P
domains; lam has shape (P, m, n) for m bound rows; alphas and betas are dicts by ReLU layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifier.certcheck.network import Network
from verifier.certcheck.rounding import UNDERFLOW, UNIT, LowerSum, down, gamma, inflate, up

_MAX_ELEMENTS = 1 << 20  # lam elements per backward chunk (larger ones thrash the caches: 1.4x slower)


@dataclass
class Root:
    """Bounds of every value over the whole region, their magnitudes, and per linear primitive
    |A| applied to its input's magnitude (inflated): the error terms' ingredients."""

    lower: list
    upper: list
    mag: list
    amag: list
    extra: list  # per linear primitive: how far the exact op can be from its float64 form
    tiny: list  # per ReLU layer: input intervals narrower than this get a flat upper line
    charge: list  # per linear primitive: owed per unit of |lam| at its output (see linear_back)
    domains: "Domains | None" = None  # the region's box as a domain, with CROWN's bounds

    @staticmethod
    def of(net: Network, lower: list, upper: list) -> "Root":
        mag = [np.maximum(np.abs(l), np.abs(u)).reshape(-1) for l, u in zip(lower, upper)]
        amag = [None if p.kind == "relu" else inflate(p.lin(m[None], "abs")[0], p.fan_in)
                for p, m in zip(net.prims, mag)]
        extra = [None if p.kind == "relu" else p.extra(m) for p, m in zip(net.prims, mag)]
        tiny = [_TINY_WIDTH * max(1.0, float(mag[i].max(initial=0.0))) for i in net.relu_at]
        charge = [None if p.kind == "relu" else _charge(p, a, e) for p, a, e in zip(net.prims, amag, extra)]
        return Root([l.reshape(-1) for l in lower], [u.reshape(-1) for u in upper], mag, amag, extra, tiny, charge)


def _charge(prim, amag, extra):
    """gamma |A| mag (lam_in's rounding) + extra (merged weights) + gamma |b| (lam . b's)."""
    bias = 0.0 if prim.bias is None else gamma(prim.n_out) * np.abs(prim.bias)
    return inflate(gamma(prim.fan_out) * amag + extra + bias, 4)


# A neuron whose value the verifier computes as exactly 0 (weights that cancel, as in
# tllverifybench's lattice networks) comes out here as [-1e-14, 1e-14]: rigorous error terms.
# The chord there has slope 1/2 and lets half of every coefficient through, where the verifier,
# seeing a stable neuron, lets none through; the flat line relu(x) <= u is as valid and keeps
# such neurons out of the bound. Any choice is sound; this one only follows the verifier.
_TINY_WIDTH = 1e-10



# ------------------------------------------------------------------ elementary rules

def linear_ibp(prim, l, u, extra=0.0):
    """Interval bounds of A x + b for x in [l, u] (rows of a batch); extra: how far the exact op
    can be from its float64 form there."""
    amag = inflate(prim.lin(np.maximum(np.abs(l), np.abs(u)), "abs"), prim.fan_in)
    c = (l + u) / 2
    r = np.maximum(up(u - c), up(c - l))
    mid = prim.evaluate(c)
    radius = inflate(prim.lin(r, "abs"), prim.fan_in)
    bias = 0.0 if prim.bias is None else np.abs(prim.bias)
    total = inflate(radius + gamma(prim.fan_in + 1) * (amag + bias) + extra, 4)
    return down(mid - total), up(mid + total)


def linear_back(prim, lam, coefficient):
    """lam . (A x + b) >= lam_in . x + value - error, where error = |lam| . coefficient and the
    coefficient (per output, nonnegative) holds every bound owed per unit of |lam| at this op:
    the rounding of lam_in and of lam . b (Root.charge), the float32 rounding of the result
    (Domains.rounding), the rounding of the ReLU step that made lam (if any)."""
    lam_in = prim.lin_t(lam)
    error = inflate(_rowwise(np.abs(lam), coefficient), lam.shape[-1])
    value = lam @ prim.bias if prim.bias is not None else 0.0
    return lam_in, value, error


def upper_line(l, u, tiny: float = 0.0):
    """Slopes s and intercepts t with s x + t >= relu(x) on [l, u] (checked at both ends,
    rounded outward); identity where l >= 0, zero where u <= 0, flat (s = 0, t = u) where the
    interval is narrower than `tiny`."""
    unstable = (l < 0) & (u > 0)
    flat = unstable & (u - l <= tiny)
    s = np.where(unstable, u / np.where(unstable, u - l, 1.0), (l >= 0).astype(np.float64))
    s = np.where(flat, 0.0, s)
    at_l = up(-s * l)  # s l + t >= 0
    p = s * u
    at_u = up(up(u - p) + UNIT * np.abs(p) + UNDERFLOW)  # s u + t >= u
    t = np.where(unstable, np.maximum(at_l, at_u), 0.0)
    return s, t


def adaptive_slopes(l, u, tiny: float = 0.0):
    """CROWN's lower slopes: 1 where u > -l, else 0 (any slope in [0, 1] is valid); 0 on the
    intervals narrower than `tiny`."""
    return ((u > -l) & (u - l > tiny)).astype(np.float64)


def relu_back(lam, relaxation, alpha):
    """lam . relu(x) >= nu_exact . x + value - error over x in [l, u], with the layer's
    relaxation (Relaxation.of); alpha (P, m, n): lower slopes for the unstable neurons (None:
    the relaxation's default ones). The computed nu is one rounded product per element off
    nu_exact: the caller owes UNIT |nu| . |x| (see backward_lower)."""
    if alpha is None:
        lower = relaxation.lower[:, None, :]
    else:  # stable neurons keep their exact slope (1 active, 0 inactive)
        lower = np.where(relaxation.unstable[:, None, :], alpha, relaxation.lower[:, None, :])
    nu = lam * np.where(lam >= 0, lower, relaxation.s[:, None, :])
    value = _rowwise(np.minimum(lam, 0.0), relaxation.t)  # terms of one sign: error gamma |value|
    return nu, value, inflate(gamma(lam.shape[-1]) * -value, 4)


@dataclass
class Relaxation:
    """A ReLU layer's relaxation over P domains, each (P, n): the unstable neurons, the lower
    slopes (the default ones where unstable; 1 where active, 0 where inactive) and the upper
    lines s x + t."""

    unstable: np.ndarray
    lower: np.ndarray
    s: np.ndarray
    t: np.ndarray

    @staticmethod
    def of(l, u, choice, tiny: float) -> "Relaxation":
        unstable = (l < 0) & (u > 0)
        s, t = upper_line(l, u, tiny)
        return Relaxation(unstable, np.where(unstable, choice, (l >= 0).astype(np.float64)), s, t)

    def select(self, index) -> "Relaxation":
        return Relaxation(*(a[index] for a in (self.unstable, self.lower, self.s, self.t)))


def concretize(lam, lo, hi):
    """min over the box of lam . x: (value, error), lam (P, m, n), lo/hi (P, n)."""
    terms = np.where(lam > 0, lam * lo[:, None, :], lam * hi[:, None, :])
    return terms.sum(-1), inflate(gamma(lam.shape[-1] + 1) * np.abs(terms).sum(-1), 2)


def _rowwise(lam, v):
    """sum_n lam[p, m, n] v[p, n] (v may have a single row for every p, or be one vector): (P, m)."""
    if v.ndim == 1:
        return lam @ v
    return (lam @ v[:, :, None])[..., 0]


# ------------------------------------------------------------------ the backward pass

@dataclass
class Domains:
    """P domains: input boxes (P, n0), the bounds of each ReLU layer's input (P, n_k), and the
    lower slopes used where no others are given (P, n_k): CROWN's adaptive ones, except where
    the certificate says which the verifier took at a near-tie u = -l (both are valid; its
    choice keeps the bounds it proved with)."""

    lo: np.ndarray
    hi: np.ndarray
    pre: list  # per ReLU layer: (l, u)
    choice: list = None  # per ReLU layer: default lower slopes
    rounding: list = None  # per primitive: float32 rounding bound of its result (P, n), None for ReLU
    relax: list = None  # per ReLU layer: its Relaxation

    def __post_init__(self):
        self.choice = [] if self.choice is None else self.choice
        self.rounding = [] if self.rounding is None else self.rounding
        self.relax = [] if self.relax is None else self.relax

    def select(self, index, backward_only: bool = False) -> "Domains":
        """Domains index[i] of these; backward_only: only what backward_lower reads (boxes,
        roundings, relaxations), to save the copies."""
        rounding = [None if r is None else (r if len(r) == 1 else r[index]) for r in self.rounding]
        relax = [r.select(index) for r in self.relax]
        if backward_only:
            return Domains(self.lo[index], self.hi[index], [], [], rounding, relax)
        return Domains(self.lo[index], self.hi[index], [(l[index], u[index]) for l, u in self.pre],
                       [c[index] for c in self.choice], rounding, relax)

    def add_layer(self, l, u, tiny: float, overrides=None) -> None:
        """Append layer len(pre)'s bounds and relaxation; overrides: (rows, neurons, slopes) of
        recorded slope choices."""
        choice = adaptive_slopes(l, u, tiny)
        if overrides is not None:
            rows, neurons, slopes = overrides
            choice[rows, neurons] = slopes
        self.pre.append((l, u))
        self.choice.append(choice)
        self.relax.append(Relaxation.of(l, u, choice, tiny))


def backward_lower(net: Network, root: Root, start: int, lam: np.ndarray, domains: Domains,
                   alphas: dict | None = None, betas: dict | None = None) -> np.ndarray:
    """Rigorous lower bounds (P, m) of lam . value_start over each domain. betas: layer ->
    (beta (P, m, n), sign (P, 1, n)) for split constraints sign * x <= 0."""
    alphas, betas = alphas or {}, betas or {}
    total = LowerSum(lam.shape[:2])
    owed = None  # UNIT |x| per element: the last step's rounding of lam, charged with the next

    def settle(lam, owed):
        if owed is not None:
            total.add(0.0, inflate(_rowwise(np.abs(lam), owed), lam.shape[-1]))

    for i in reversed(range(start)):
        prim = net.prims[i]
        if prim.kind == "relu":
            k = prim.layer
            settle(lam, owed)
            lam, value, error = relu_back(lam, domains.relax[k], alphas.get(k))
            total.add(value, error + UNDERFLOW * root.mag[i].sum())
            owed = UNIT * root.mag[i]
            if k in betas:  # the split s x <= 0 times beta >= 0, added to lam (rounded once more)
                settle(lam, owed)
                beta, sign = betas[k]
                lam = lam + beta * sign
        else:
            coefficient = root.charge[i] + domains.rounding[i] + (0.0 if owed is None else owed)
            owed = None
            lam, value, error = linear_back(prim, lam, coefficient)
            total.add(value, error)
    settle(lam, owed)
    total.add(*concretize(lam, domains.lo, domains.hi))
    return total.lower()


# ------------------------------------------------------------------ intermediate bounds

def unit_rows(size: int, neurons: np.ndarray) -> np.ndarray:
    """(P, 2, size): +e_j and -e_j for each neuron j of the list."""
    lam = np.zeros((len(neurons), 2, size))
    rows = np.arange(len(neurons))
    lam[rows, 0, neurons] = 1.0
    lam[rows, 1, neurons] = -1.0
    return lam


# As the verifier's engine.tighten: a batch whose unstable (box, neuron) pairs are at least this
# share of (boxes x neurons unstable in some box) gets CROWN on those neurons in every box, the
# stable copies included (tighter bounds there change later layers' intervals and roundings).
_PAIR_FRACTION = 0.6


def tighten_pairs(net: Network, root: Root, layer: int, domains: Domains, l, u, slopes=None):
    """CROWN bounds of layer `layer`'s unstable (domain, neuron) pairs (or of the neurons
    unstable in some domain, in every domain, where the verifier's rule says so), intersected
    with (l, u). slopes(pairs_box, pairs_neuron, their domains) -> alphas for those pairs' rows
    (adaptive where None)."""
    start = net.relu_at[layer]
    unstable = (l < 0) & (u > 0)
    boxes, neurons = np.nonzero(unstable)
    if len(boxes) == 0:
        return l, u
    rows = np.flatnonzero(unstable.any(0))
    widest = max(net.sizes[: start + 1])
    l, u = l.copy(), u.copy()
    sub = Domains(domains.lo, domains.hi, domains.pre[:layer], domains.choice[:layer], domains.rounding[:start],
                  domains.relax[:layer])
    if slopes is None and len(boxes) >= _PAIR_FRACTION * len(l) * len(rows):
        return _tighten_rows(net, root, start, sub, l, u, rows, widest)
    chunk = max(1, _MAX_ELEMENTS // (2 * widest))
    for part in range(0, len(boxes), chunk):
        b, j = boxes[part:part + chunk], neurons[part:part + chunk]
        chosen = sub if len(sub.lo) == 1 else sub.select(b, backward_only=slopes is None)  # one: broadcast
        alphas = slopes(b, j, chosen) if slopes is not None else None
        lower = backward_lower(net, root, start, unit_rows(net.sizes[start], j), chosen, alphas)
        l[b, j] = np.maximum(l[b, j], lower[:, 0])
        u[b, j] = np.minimum(u[b, j], -lower[:, 1])
    return l, u


def _tighten_rows(net: Network, root: Root, start: int, sub: "Domains", l, u, rows, widest: int):
    """CROWN bounds of the same neurons `rows` in every domain: each domain's rows in one
    backward pass (P, 2 |rows|, n) on its own relaxations, with no per-pair copies."""
    lam = unit_rows(net.sizes[start], rows).reshape(1, 2 * len(rows), -1)
    chunk = max(1, _MAX_ELEMENTS // (2 * len(rows) * widest))
    for part in range(0, len(l), chunk):
        b = np.arange(part, min(part + chunk, len(l)))
        chosen = sub if len(sub.lo) == 1 else sub.select(b, backward_only=True)
        lower = backward_lower(net, root, start, np.broadcast_to(lam, (len(b), *lam.shape[1:])), chosen)
        lower = lower.reshape(len(b), len(rows), 2)
        l[np.ix_(b, rows)] = np.maximum(l[np.ix_(b, rows)], lower[..., 0])
        u[np.ix_(b, rows)] = np.minimum(u[np.ix_(b, rows)], -lower[..., 1])
    return l, u


def crown_bounds(net: Network, root: Root, lo, hi, inherited: list | None = None, slopes=None,
                 first_layer: int = 0, lemmas: dict | None = None, choices: dict | None = None
                 ) -> tuple[Domains, list, list]:
    """IBP, then CROWN on the unstable neurons of each ReLU layer's input, in order (what the
    verifier's crown() does). inherited: per layer (l, u) already proved for these boxes (kept
    where tighter); layers before first_layer keep them as they are. slopes(layer) -> a pair
    selector as in tighten_pairs (recorded alpha-CROWN slopes), or None. lemmas: layer ->
    (l, u) refined bounds to intersect before tightening. Returns the domains and the bounds
    of every value. choices: layer -> recorded slope choices (see Domains.add_layer)."""
    choices = choices or {}
    domains = Domains(lo, hi, [])
    lowers, uppers = [lo], [hi]
    l, u = lo, hi
    for i, prim in enumerate(net.prims):
        if prim.kind == "relu":
            k = prim.layer
            if inherited is not None:
                l, u = np.maximum(l, inherited[k][0]), np.minimum(u, inherited[k][1])
            if lemmas and k in lemmas:
                l, u = np.maximum(l, lemmas[k][0]), np.minimum(u, lemmas[k][1])
            if k >= first_layer and (lemmas is None or k not in lemmas):
                l, u = tighten_pairs(net, root, k, domains, l, u, slopes(k) if slopes else None)
            domains.add_layer(l, u, root.tiny[k], choices.get(k))
            domains.rounding.append(None)
            lowers[-1], uppers[-1] = l, u
            l, u = np.maximum(l, 0.0), np.maximum(u, 0.0)
        else:
            l, u = _rounded_ibp(prim, l, u, root.extra[i], domains)
        lowers.append(l)
        uppers.append(u)
    return domains, lowers, uppers


def _rounded_ibp(prim, l, u, extra, domains: Domains):
    """IBP of a linear primitive widened by its float32 rounding bound (kept in the domains)."""
    r = prim.rounding(np.maximum(np.abs(l), np.abs(u)))
    domains.rounding.append(r)
    l, u = linear_ibp(prim, l, u, extra)
    return down(l - r), up(u + r)


def domain_roundings(net: Network, root: Root, domains: Domains) -> list:
    """Each primitive's float32 rounding bound in each domain, from interval bounds through the
    chain that start again at every ReLU input from the domains' bounds (as the verifier derives
    the bounds of a split domain's other nodes)."""
    scratch = Domains(domains.lo, domains.hi, [])
    l, u = domains.lo, domains.hi
    for i, prim in enumerate(net.prims):
        if prim.kind == "relu":
            l, u = domains.pre[prim.layer]
            scratch.rounding.append(None)
            l, u = np.maximum(l, 0.0), np.maximum(u, 0.0)
        else:
            l, u = _rounded_ibp(prim, l, u, root.extra[i], scratch)
    return scratch.rounding


def root_bounds(net: Network, lo: np.ndarray, hi: np.ndarray) -> Root:
    """The region's root: IBP with magnitudes taken from its own bounds, then plain CROWN on
    every ReLU input with those magnitudes in the error terms."""
    lo, hi = lo[None], hi[None]
    lowers, uppers = [lo], [hi]
    l, u = lo, hi
    scratch = Domains(lo, hi, [])
    for prim in net.prims:
        if prim.kind == "relu":
            l, u = np.maximum(l, 0.0), np.maximum(u, 0.0)
        else:
            l, u = _rounded_ibp(prim, l, u, prim.extra(np.maximum(np.abs(l), np.abs(u))[0]), scratch)
        lowers.append(l)
        uppers.append(u)
    interval = Root.of(net, lowers, uppers)
    domains, lowers, uppers = crown_bounds(net, interval, lo, hi)
    root = Root.of(net, [np.maximum(a, b) for a, b in zip(lowers, interval.lower)],
                   [np.minimum(a, b) for a, b in zip(uppers, interval.upper)])
    root.domains = domains
    return root


# ------------------------------------------------------------------ forward mode

def forward_bounds(net: Network, root: Root, lo, hi, choices: dict | None = None) -> Domains:
    """Forward-mode linear bounds (lower and upper functions A x + b of the input), concretized
    at each ReLU input and intersected with IBP, as the verifier's forward_bounds does."""
    B, n = lo.shape
    choices = choices or {}
    magx = np.maximum(np.abs(lo), np.abs(hi))
    a_lo = np.broadcast_to(np.eye(n), (B, n, n))
    a_up, b_lo, b_up = a_lo, np.zeros((B, n)), np.zeros((B, n))
    domains = Domains(lo, hi, [])
    l, u = lo, hi
    for i, prim in enumerate(net.prims):
        if prim.kind == "relu":
            l = np.maximum(l, _fn_extreme(a_lo, b_lo, lo, hi, lower=True))
            u = np.minimum(u, _fn_extreme(a_up, b_up, lo, hi, lower=False))
            domains.add_layer(l, u, root.tiny[prim.layer], choices.get(prim.layer))
            domains.rounding.append(None)
            a_lo, b_lo, a_up, b_up = _relu_forward(a_lo, b_lo, a_up, b_up, domains.relax[-1], magx)
            l, u = np.maximum(l, 0.0), np.maximum(u, 0.0)
        else:
            a_lo, b_lo, a_up, b_up = _linear_forward(prim, a_lo, b_lo, a_up, b_up, magx, root.extra[i])
            l, u = _rounded_ibp(prim, l, u, root.extra[i], domains)
            r = domains.rounding[-1]  # the functions move apart by the result's rounding
            b_lo, b_up = down(b_lo - r), up(b_up + r)
    return domains


def _fn_extreme(a, b, lo, hi, lower: bool):
    """Rigorous min (or max) over the box of the functions a (B, n_x, n) x + b (B, n)."""
    if lower:
        terms = np.where(a > 0, a * lo[:, :, None], a * hi[:, :, None])
    else:
        terms = np.where(a > 0, a * hi[:, :, None], a * lo[:, :, None])
    error = inflate(gamma(a.shape[1] + 2) * (np.abs(terms).sum(1) + np.abs(b)), 2)
    value = terms.sum(1) + b
    return down(value - error) if lower else up(value + error)


def _coefficients(prim, a, part):
    B, nx = a.shape[:2]
    return prim.lin(a.reshape(B * nx, -1), part).reshape(B, nx, -1)


def _linear_forward(prim, a_lo, b_lo, a_up, b_up, magx, extra):
    """Lower function: W+ applied to the lower one, W- to the upper one (and the reverse for
    the upper function); the coefficients' rounding moves into the constants."""
    def side(a_main, b_main, a_other, b_other, sign):
        a = _coefficients(prim, a_main, "pos") + _coefficients(prim, a_other, "neg")
        b = prim.lin(b_main, "pos") + prim.lin(b_other, "neg")
        if prim.bias is not None:
            b = b + prim.bias
        m_main = np.einsum("bx,bxn->bn", magx, np.abs(a_main)) + np.abs(b_main)
        m_other = np.einsum("bx,bxn->bn", magx, np.abs(a_other)) + np.abs(b_other)
        size = prim.lin(m_main, "pos") - prim.lin(m_other, "neg")
        if prim.bias is not None:
            size = size + np.abs(prim.bias)
        error = inflate(gamma(2 * prim.fan_in + 2) * size + extra, 4)
        return a, (down(b - error) if sign < 0 else up(b + error))

    new_a_lo, new_b_lo = side(a_lo, b_lo, a_up, b_up, -1)
    new_a_up, new_b_up = side(a_up, b_up, a_lo, b_lo, +1)
    return new_a_lo, new_b_lo, new_a_up, new_b_up


def _relu_forward(a_lo, b_lo, a_up, b_up, relaxation: Relaxation, magx):
    """relu(x) >= a x >= a L(x) (a in {0, 1}: the layer's slope choice, exact products) and
    relu(x) <= s x + t <= s U(x) + t."""
    a, s, t = relaxation.lower, relaxation.s, relaxation.t
    new_a_lo, new_b_lo = a[:, None, :] * a_lo, a * b_lo
    new_a_up, new_b_up = s[:, None, :] * a_up, s * b_up + t
    size = np.einsum("bx,bxn->bn", magx, np.abs(new_a_up)) + np.abs(s * b_up) + np.abs(new_b_up)
    error = inflate(UNIT * size + UNDERFLOW * (magx.sum(1, keepdims=True) + 1), 4)
    return new_a_lo, new_b_lo, new_a_up, up(new_b_up + error)
