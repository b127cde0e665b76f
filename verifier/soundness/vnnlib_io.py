"""Writing the soundness specs, and reading boxes and unsafe sets back from VNN-LIB text.

The reader is the harness's own, independent of `verifier.spec` (a harness that shared the
verifier's parser would not notice a bug in it). It reads the subset the generator and
VNN-COMP robustness specs use: `declare-const`, one box of `(<= X_i c)` / `(>= X_i c)`
bounds, and output constraints `(op a b)` over `Y_j` and constants, optionally inside
`and` / `or` (disjunctive normal form, as VNN-COMP writes it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def exact(value) -> str:
    """A float32 value as the shortest decimal that reads back to the same float32 and float64."""
    return repr(float(np.float32(value)))


def spec_text(lo: np.ndarray, hi: np.ndarray, label: int, comment: str) -> str:
    """A robustness spec over a box: unsafe iff the other logit is at least the label's."""
    other = 1 - label
    lines = [f"; {comment}", ""]
    lines += [f"(declare-const X_{i} Real)" for i in range(len(lo))]
    lines += ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)", "", "; input box"]
    for i, (a, b) in enumerate(zip(lo, hi)):
        lines += [f"(assert (<= X_{i} {exact(b)}))", f"(assert (>= X_{i} {exact(a)}))"]
    lines += ["", f"; unsafe: Y_{other} >= Y_{label}", f"(assert (>= Y_{other} Y_{label}))", ""]
    return "\n".join(lines)


@dataclass
class Spec:
    """A box (float64, as written) and an unsafe set: some disjunct whose rows all hold,
    each row (a, b) meaning a . y <= b."""

    lo: np.ndarray
    hi: np.ndarray
    disjuncts: list[list[tuple[np.ndarray, float]]] = field(default_factory=list)

    def inside(self, x: np.ndarray) -> bool:
        """x (float64 values) in the box, no tolerance."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        return x.shape == self.lo.shape and bool(np.all(x >= self.lo) and np.all(x <= self.hi))

    def unsafe(self, y: np.ndarray) -> bool:
        """Output y in the unsafe set, no tolerance."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        return any(all(float(a @ y) <= b for a, b in rows) for rows in self.disjuncts)

    def violation(self, y: np.ndarray) -> float:
        """How far inside the unsafe set y is: the best disjunct's smallest slack b - a . y."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        return max(min(b - float(a @ y) for a, b in rows) for rows in self.disjuncts)


class SpecError(ValueError):
    pass


def read_spec(path: str | Path) -> Spec:
    return parse_spec(Path(path).read_text())


def parse_spec(text: str) -> Spec:
    tree = _parse_sexprs(text)
    names = [e[1] for e in tree if isinstance(e, list) and e and e[0] == "declare-const"]
    n_in = sum(1 for name in names if name.startswith("X_"))
    n_out = sum(1 for name in names if name.startswith("Y_"))
    lo, hi = np.full(n_in, -np.inf), np.full(n_in, np.inf)
    output_terms = []
    for e in tree:
        if not (isinstance(e, list) and e and e[0] == "assert"):
            continue
        body = e[1]
        if _is_input_bound(body):
            _apply_bound(body, lo, hi)
        else:
            output_terms.append(_dnf(body, n_out))
    disjuncts = [[]]
    for term in output_terms:  # conjunction of the asserts, each in DNF
        disjuncts = [d + t for d in disjuncts for t in term]
    if not np.all(np.isfinite(lo) & np.isfinite(hi)):
        raise SpecError("the input box is not bounded on every X_i")
    return Spec(lo, hi, disjuncts)


def _parse_sexprs(text: str) -> list:
    tokens = re.findall(r"\(|\)|[^\s()]+", re.sub(r";[^\n]*", "", text))
    stack: list[list] = [[]]
    for tok in tokens:
        if tok == "(":
            stack.append([])
        elif tok == ")":
            if len(stack) == 1:
                raise SpecError("unbalanced ')'")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise SpecError("unbalanced '('")
    return stack[0]


def _is_input_bound(body) -> bool:
    return (isinstance(body, list) and len(body) == 3 and body[0] in ("<=", ">=")
            and any(isinstance(t, str) and t.startswith("X_") for t in body[1:]))


def _apply_bound(body, lo, hi) -> None:
    op, a, b = body
    if a.startswith("X_"):
        index, value, upper = int(a[2:]), float(b), op == "<="
    else:
        index, value, upper = int(b[2:]), float(a), op == ">="
    if upper:
        hi[index] = min(hi[index], value)
    else:
        lo[index] = max(lo[index], value)


def _dnf(body, n_out: int) -> list[list[tuple[np.ndarray, float]]]:
    """A list of disjuncts, each a list of rows (a, b): a . y <= b."""
    head = body[0]
    if head == "or":
        return [d for part in body[1:] for d in _dnf(part, n_out)]
    if head == "and":
        disjuncts = [[]]
        for part in body[1:]:
            disjuncts = [d + t for d in disjuncts for t in _dnf(part, n_out)]
        return disjuncts
    if head in ("<=", ">="):
        left, right = _term(body[1], n_out), _term(body[2], n_out)
        a, c = left[0] - right[0], right[1] - left[1]  # a . y <= c  for  left <= right
        return [[(a, c)]] if head == "<=" else [[(-a, -c)]]
    raise SpecError(f"unsupported constraint '{head}'")


def _term(token, n_out: int) -> tuple[np.ndarray, float]:
    coeffs = np.zeros(n_out)
    if isinstance(token, str) and token.startswith("Y_"):
        coeffs[int(token[2:])] = 1.0
        return coeffs, 0.0
    try:
        return coeffs, float(token)
    except (TypeError, ValueError):
        raise SpecError(f"unsupported term {token!r}") from None
