"""The checker's own VNN-LIB reader (a subset: what VNN-COMP's properties use).

The file asserts the unsafe set. It becomes regions: an input box and a union of output
polytopes C y <= d. Supported: declare-const X_i / Y_j Real, assert, and, or, the comparisons
<= >= < > (strict read as non-strict: an unsafe set made larger is conservative for unsat)
between linear terms (+, -, * by numbers, numbers, variables). Input constraints must bound
one X_i with coefficient +-1; numbers are read as the nearest float64, as the verifier reads
them. Output rows are combined exactly (rationals): the coefficients must come out as exact
floats and the thresholds are rounded up (a larger unsafe set).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from verifier.certcheck.network import CheckerError

_TOKEN = re.compile(r";[^\n]*|[()]|[^\s();]+")
_VARIABLE = re.compile(r"([XY])_(\d+)$")
MAX_BRANCHES = 100_000


@dataclass
class SpecRegion:
    lo: np.ndarray
    hi: np.ndarray
    disjuncts: list  # [(C (r, n_out), d (r,))]


def parse_spec(path: str, n_inputs: int, n_outputs: int) -> list[SpecRegion]:
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise CheckerError(f"{path}: cannot read ({e.strerror})") from None
    return _Parser(path, n_inputs, n_outputs).regions(text)


class _Parser:
    def __init__(self, path, n_inputs, n_outputs):
        self.path, self.n_in, self.n_out = path, n_inputs, n_outputs
        self.declared: set[str] = set()

    def fail(self, what):
        raise CheckerError(f"{self.path}: {what}")

    def forms(self, text):
        stack, out = [[]], None
        for token in _TOKEN.findall(text):
            if token.startswith(";"):
                continue
            if token == "(":
                stack.append([])
            elif token == ")":
                if len(stack) == 1:
                    self.fail("unbalanced ')'")
                done = stack.pop()
                stack[-1].append(done)
            else:
                stack[-1].append(token)
        if len(stack) != 1:
            self.fail("unbalanced '('")
        out = stack[0]
        return out

    def regions(self, text) -> list[SpecRegion]:
        branches = [((), ())]  # (input bounds, output rows)
        for form in self.forms(text):
            if not isinstance(form, list) or not form:
                self.fail(f"unexpected '{form}' at the top level")
            if form[0] == "declare-const":
                self.declare(form)
            elif form[0] == "assert" and len(form) == 2:
                dnf = self.dnf(form[1])
                if len(branches) * len(dnf) > MAX_BRANCHES:
                    self.fail(f"more than {MAX_BRANCHES} branches")
                branches = [(a[0] + b[0], a[1] + b[1]) for a in branches for b in dnf]
            else:
                self.fail(f"unsupported form '{form[0]}'")
        return self.group(branches)

    def declare(self, form):
        if len(form) != 3 or form[2] != "Real" or not isinstance(form[1], str) or not _VARIABLE.match(form[1]):
            self.fail(f"unsupported declaration {form}")
        self.declared.add(form[1])

    def dnf(self, node) -> list:
        if not isinstance(node, list) or not node:
            self.fail(f"expected a formula, got '{node}'")
        op, args = node[0], node[1:]
        if op in ("<=", ">=", "<", ">"):
            if len(args) != 2:
                self.fail(f"'{op}' takes two operands")
            return [self.comparison(op, *args)]
        if op == "and":
            result = [((), ())]
            for arg in args:
                result = [(a[0] + b[0], a[1] + b[1]) for a in result for b in self.dnf(arg)]
                if len(result) > MAX_BRANCHES:
                    self.fail(f"more than {MAX_BRANCHES} branches")
            return result
        if op == "or":
            return [branch for arg in args for branch in self.dnf(arg)]
        self.fail(f"unsupported operator '{op}'")

    def comparison(self, op, left, right):
        left, right = self.term(left), self.term(right)
        small, large = (left, right) if op in ("<=", "<") else (right, left)
        coefficients = dict(small[0])
        for name, c in large[0].items():
            coefficients[name] = coefficients.get(name, 0) - c
        coefficients = {k: c for k, c in coefficients.items() if c != 0}
        bound = large[1] - small[1]  # sum coefficients * vars <= bound
        kinds = {name[0] for name in coefficients}
        if kinds == {"X"}:
            return (self.input_bound(coefficients, bound),), ()
        if "X" in kinds:
            self.fail("a constraint mixes inputs and outputs")
        if not coefficients:
            return ((), ()) if bound >= 0 else ((), (((), bound),))
        return (), ((tuple(sorted((int(k[2:]), c) for k, c in coefficients.items())), bound),)

    def input_bound(self, coefficients, bound):
        if len(coefficients) != 1:
            self.fail("input constraints must bound a single X_i")
        (name, c), = coefficients.items()
        if abs(c) != 1:
            self.fail(f"input constraint on {name} with coefficient {c} (only +-1 supported)")
        value = float(bound) * int(c)  # the nearest float of the bound, as the verifier reads it
        index = int(name[2:])
        return (index, value, math.inf) if c < 0 else (index, -math.inf, value)

    def term(self, node):
        """({variable: Fraction}, Fraction constant)."""
        if isinstance(node, str):
            if node in self.declared:
                return {node: Fraction(1)}, Fraction(0)
            if _VARIABLE.match(node):
                self.fail(f"undeclared variable {node}")
            try:
                value = float(node)
            except ValueError:
                self.fail(f"unknown symbol '{node}'")
            if not math.isfinite(value):
                self.fail(f"number {node} is not finite")
            return {}, Fraction(value)  # the nearest float64, exactly
        op, args = node[0], [self.term(a) for a in node[1:]]
        if op == "+" or (op == "-" and len(args) > 1):
            signs = [1] + [1 if op == "+" else -1] * (len(args) - 1)
            coefficients, constant = {}, Fraction(0)
            for sign, (cs, k) in zip(signs, args):
                for name, c in cs.items():
                    coefficients[name] = coefficients.get(name, 0) + sign * c
                constant += sign * k
            return coefficients, constant
        if op == "-":
            (cs, k), = args
            return {n: -c for n, c in cs.items()}, -k
        if op == "*":
            factor, variable = Fraction(1), None
            for cs, k in args:
                if cs and variable is not None:
                    self.fail("product of two variables")
                if cs:
                    variable = (cs, k)
                else:
                    factor *= k
            if variable is None:
                return {}, factor
            return {n: factor * c for n, c in variable[0].items()}, factor * variable[1]
        self.fail(f"unsupported operator '{op}' in a term")

    def group(self, branches) -> list[SpecRegion]:
        by_box: dict[tuple, list] = {}
        for bounds, rows in branches:
            lo, hi = [-math.inf] * self.n_in, [math.inf] * self.n_in
            for index, b_lo, b_hi in bounds:
                if index >= self.n_in:
                    self.fail(f"X_{index} is beyond the model's {self.n_in} inputs")
                lo[index], hi[index] = max(lo[index], b_lo), min(hi[index], b_hi)
            if any(a > b for a, b in zip(lo, hi)):
                continue  # an empty box: nothing to prove there
            if not all(math.isfinite(v) for v in lo + hi):
                self.fail("every input must be bounded on both sides")
            by_box.setdefault((tuple(lo), tuple(hi)), []).append(self.disjunct(rows))
        return [SpecRegion(np.array(lo), np.array(hi), disjuncts) for (lo, hi), disjuncts in by_box.items()]

    def disjunct(self, rows):
        C = np.zeros((len(rows), self.n_out))
        d = np.zeros(len(rows))
        for r, (coefficients, bound) in enumerate(rows):
            for j, c in coefficients:
                if j >= self.n_out:
                    self.fail(f"Y_{j} is beyond the model's {self.n_out} outputs")
                if Fraction(float(c)) != c:
                    self.fail(f"an output coefficient {c} is not a float64")
                C[r, j] = float(c)
            d[r] = _round_up(bound)
        return C, d


def _round_up(value: Fraction) -> float:
    nearest = float(value)
    return nearest if Fraction(nearest) >= value else float(np.nextafter(nearest, math.inf))
