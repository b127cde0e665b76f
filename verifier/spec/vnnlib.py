"""VNN-LIB reader for the VNN-COMP dialect.

A VNN-LIB file asserts the *negation* of a property: the result is the unsafe set, a list of
Regions (an input box and a union of output polytopes C y <= d); the property is violated (sat)
iff some x in a region's box has f(x) in one of that region's disjuncts.

Supported: `(declare-const X_i Real)`, `(declare-const Y_j Real)`, `(assert F)` where F is built
from `and`, `or` and the comparisons `<= >= < >` (strict read as non-strict, as every VNN-COMP
tool does) between linear terms (`+`, `-`, `*` by constants, numbers, variables). Constraints on
inputs must be bounds on one X_i each (boxes only); constraints on outputs may be any linear
inequality.
"""
from __future__ import annotations

import gzip
import itertools
import math
import re
from pathlib import Path
from typing import NamedTuple, NoReturn

import numpy as np

from verifier.errors import SpecError
from verifier.spec.region import Disjunct, Region

__all__ = ["MAX_BRANCHES", "parse_vnnlib", "parse_vnnlib_text"]

MAX_BRANCHES = 100_000  # DNF branches after expanding every (or); more is an error

_TOKEN = re.compile(r";[^\n]*|[()]|[^\s();]+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_LOOKS_NUMERIC = re.compile(r"[+-]?\.?\d")
_VARIABLE_NAME = re.compile(r"([XY])_(0|[1-9]\d*)")
_COMPARISONS = frozenset(("<=", ">=", "<", ">"))
_LINEAR_OPERATORS = frozenset(("+", "-", "*"))
_NOUNS = {"X": "inputs", "Y": "outputs"}

# An s-expression node is (payload, position): payload is an atom's text or a list of nodes, and
# position is the index of its first token (turned into a line number only for errors).
Node = tuple  # (str | list[Node], int)

# A linear term: ({variable name: coefficient}, constant).
Linear = tuple


class Bound(NamedTuple):
    """lo <= X_index <= hi (one side may be infinite), from the comparison at token `position`."""

    index: int
    lo: float
    hi: float
    position: int


class Row(NamedTuple):
    """sum of coefficient * Y_j over `coefficients` ((j, coefficient) pairs) <= bound."""

    coefficients: tuple
    bound: float


class Branch(NamedTuple):
    """One conjunction of a DNF: input bounds and output rows."""

    bounds: tuple  # of Bound
    rows: tuple  # of Row


TRUE_BRANCH = Branch((), ())


def parse_vnnlib(
    path: str | Path, n_inputs: int | None = None, n_outputs: int | None = None
) -> list[Region]:
    """Read a VNN-LIB file (plain or .gz) into its unsafe Regions; see the module docstring."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                text = f.read()
        else:
            text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read: {e}") from None
    return parse_vnnlib_text(text, str(path), n_inputs, n_outputs)


def parse_vnnlib_text(
    text: str,
    filename: str = "<string>",
    n_inputs: int | None = None,
    n_outputs: int | None = None,
) -> list[Region]:
    """Parse VNN-LIB source text; `filename` only names the source in error messages."""
    return _Parser(text, filename).parse(n_inputs, n_outputs)


class _Parser:
    def __init__(self, text: str, filename: str):
        self.text = text
        self.filename = filename
        self.variables: dict[str, tuple[str, int, int]] = {}  # name -> (kind, index, position)
        self.declared: dict[str, dict[int, int]] = {"X": {}, "Y": {}}  # kind -> index -> position
        self.used_inputs: set[int] = set()

    def fail(self, position: int, what: str) -> NoReturn:
        raise SpecError(f"{self.filename}:{self.line_of(position)}: {what}")

    def line_of(self, position: int) -> int:
        """1-based line of the token at `position`; only errors need it, so it re-scans."""
        offset = len(self.text)
        for match in itertools.islice(_TOKEN.finditer(self.text), position, position + 1):
            offset = match.start()
        return self.text.count("\n", 0, offset) + 1

    # ----- top level -----

    def parse(self, n_inputs: int | None, n_outputs: int | None) -> list[Region]:
        assertions = []
        for node in self.read_forms():
            command = self.operator(node)
            if command == "declare-const":
                self.declare(node)
            elif command == "assert":
                assertions.append(node)
            else:
                self.fail(node[1], f"unknown command '{command}'")
        n_in = self.check_declarations("X", n_inputs)
        n_out = self.check_declarations("Y", n_outputs)
        dnfs = [(self.assertion_dnf(node), node[1]) for node in assertions]
        return self.build_regions(dnfs, n_in, n_out)

    def read_forms(self) -> list[Node]:
        """Tokenize with one regex and build the s-expression tree with an explicit stack."""
        top: list[Node] = []
        open_lists: list[tuple[list, int]] = []
        current = top
        for position, token in enumerate(_TOKEN.findall(self.text)):
            if token == "(":
                open_lists.append((current, position))
                current = []
            elif token == ")":
                if not open_lists:
                    self.fail(position, "unbalanced parentheses: ')' without a matching '('")
                parent, start = open_lists.pop()
                parent.append((current, start))
                current = parent
            elif token[0] != ";":
                current.append((token, position))
        if open_lists:
            self.fail(open_lists[0][1], "unbalanced parentheses: '(' is never closed")
        for payload, position in top:
            if isinstance(payload, str):
                self.fail(position, f"expected a command in parentheses, got '{payload}'")
        return top

    def operator(self, node: Node) -> str:
        payload, position = node
        if isinstance(payload, str):
            self.fail(position, f"expected an expression in parentheses, got '{payload}'")
        if not payload:
            self.fail(position, "empty expression '()'")
        head, head_position = payload[0]
        if not isinstance(head, str):
            self.fail(head_position, "expected an operator name, got a parenthesised expression")
        return head

    # ----- declarations -----

    def declare(self, node: Node) -> None:
        payload, position = node
        if len(payload) != 3 or not all(isinstance(item[0], str) for item in payload[1:]):
            self.fail(position, "expected (declare-const NAME Real)")
        (name, name_position), (sort, sort_position) = payload[1], payload[2]
        match = _VARIABLE_NAME.fullmatch(name)
        if not match:
            self.fail(name_position, f"bad variable name '{name}': expected X_<index> or Y_<index>")
        if sort != "Real":
            self.fail(sort_position, f"unsupported sort '{sort}' for {name}: expected Real")
        if name in self.variables:
            self.fail(name_position, f"{name} is declared twice")
        kind, index = match.group(1), int(match.group(2))
        self.variables[name] = (kind, index, position)
        self.declared[kind][index] = position

    def check_declarations(self, kind: str, expected: int | None) -> int:
        """The declared indices of `kind` must be 0..n-1 with n as the model expects; returns n."""
        noun, symbol = _NOUNS[kind], f"{kind}_{'i' if kind == 'X' else 'j'}"
        positions = self.declared[kind]
        count = len(positions)
        if count == 0:
            self.fail(0, f"declares no {noun} {symbol}")
        if expected is not None and count != expected:
            self.fail(
                max(positions.values()),
                f"declares {count} {noun} {symbol} but the model has {expected}",
            )
        out_of_range = [(pos, index) for index, pos in positions.items() if index >= count]
        if out_of_range:
            position, index = min(out_of_range)
            self.fail(
                position,
                f"variable index out of range: {kind}_{index}, but the {count} {noun} "
                f"must be numbered {kind}_0..{kind}_{count - 1}",
            )
        return count

    # ----- formulas to DNF -----

    def assertion_dnf(self, node: Node) -> list[Branch]:
        payload, position = node
        if len(payload) != 2:
            self.fail(position, f"'assert' takes one formula, got {len(payload) - 1}")
        try:
            return self.formula_dnf(payload[1])
        except RecursionError:
            self.fail(position, "formula is nested too deeply")

    def formula_dnf(self, node: Node) -> list[Branch]:
        op = self.operator(node)
        payload, position = node
        operands = payload[1:]
        if op in _COMPARISONS:
            return [self.comparison(op, operands, position)]
        if op not in ("and", "or"):
            self.fail(position, f"unknown operator '{op}' (expected and, or, <=, >=, <, >)")
        if not operands:
            self.fail(position, f"'{op}' needs at least one operand")
        dnfs = [self.formula_dnf(operand) for operand in operands]
        if op == "and":
            return self.conjunction(dnfs, position)
        branches = [branch for dnf in dnfs for branch in dnf]
        if len(branches) > MAX_BRANCHES:
            self.fail(position, f"the DNF has more than {MAX_BRANCHES} branches")
        return branches

    def conjunction(self, dnfs: list[list[Branch]], position: int) -> list[Branch]:
        # Single-branch conjuncts are merged in one go, so that a long (and ...) stays linear.
        singles = [dnf[0] for dnf in dnfs if len(dnf) == 1]
        result = [
            Branch(
                tuple(bound for branch in singles for bound in branch.bounds),
                tuple(row for branch in singles for row in branch.rows),
            )
        ]
        for dnf in dnfs:
            if len(dnf) == 1:
                continue
            if len(result) * len(dnf) > MAX_BRANCHES:
                self.fail(position, f"the DNF has more than {MAX_BRANCHES} branches")
            result = [Branch(a.bounds + b.bounds, a.rows + b.rows) for a in result for b in dnf]
        return result

    def comparison(self, op: str, operands: list[Node], position: int) -> Branch:
        if len(operands) != 2:
            self.fail(position, f"'{op}' takes 2 operands, got {len(operands)}")
        simple = self.simple_input_bound(op, operands, position)
        if simple is not None:
            return simple
        left, right = (self.linear_term(operand) for operand in operands)
        smaller, larger = (left, right) if op in ("<=", "<") else (right, left)
        coefficients = dict(smaller[0])
        for name, coefficient in larger[0].items():
            coefficients[name] = coefficients.get(name, 0.0) - coefficient
        coefficients = {name: c for name, c in coefficients.items() if c != 0.0}
        return self.constraint(coefficients, larger[1] - smaller[1], position)

    def simple_input_bound(self, op: str, operands: list[Node], position: int) -> Branch | None:
        """Fast path for the bulk of real files, (op X_i number); None for anything else."""
        (name, name_position), (number, _) = operands
        variable = self.variables.get(name) if isinstance(name, str) else None
        if variable is None or variable[0] != "X" or variable[2] > name_position:
            return None
        if not isinstance(number, str) or not _NUMBER.fullmatch(number):
            return None
        value = float(number)
        if not math.isfinite(value):
            return None
        index = variable[1]
        self.used_inputs.add(index)
        if op in ("<=", "<"):
            return Branch((Bound(index, -math.inf, value, position),), ())
        return Branch((Bound(index, value, math.inf, position),), ())

    def constraint(self, coefficients: dict[str, float], bound: float, position: int) -> Branch:
        """The branch for sum(coefficient * variable) <= bound."""
        kinds = {name[0] for name in coefficients}
        if kinds == {"X", "Y"}:
            self.fail(position, "a constraint mixes inputs X_i and outputs Y_j")
        if kinds == {"X"}:
            if len(coefficients) != 1:
                self.fail(
                    position,
                    "input constraints must be bounds on a single X_i "
                    "(only box input sets are supported)",
                )
            ((name, coefficient),) = coefficients.items()
            index, value = self.variables[name][1], bound / coefficient
            if coefficient > 0:
                return Branch((Bound(index, -math.inf, value, position),), ())
            return Branch((Bound(index, value, math.inf, position),), ())
        if not coefficients and bound >= 0:
            return TRUE_BRANCH
        # Output rows; a constant, false constraint stays as the never-satisfied row 0 <= bound.
        row = tuple((self.variables[name][1], c) for name, c in coefficients.items())
        return Branch((), (Row(row, bound),))

    # ----- linear terms -----

    def linear_term(self, node: Node) -> Linear:
        payload, position = node
        if isinstance(payload, str):
            return self.atom_term(payload, position)
        op = self.operator(node)
        if op not in _LINEAR_OPERATORS:
            self.fail(position, f"unknown operator '{op}' in a linear term (expected +, -, *)")
        if len(payload) < 2:
            self.fail(position, f"'{op}' needs at least one operand")
        terms = [self.linear_term(operand) for operand in payload[1:]]
        if op == "+":
            return _sum(terms)
        if op == "-":
            if len(terms) == 1:
                return _scale(terms[0], -1.0)
            return _sum([terms[0]] + [_scale(term, -1.0) for term in terms[1:]])
        return self.product(terms, position)

    def product(self, terms: list[Linear], position: int) -> Linear:
        factor, variable_term = 1.0, None
        for term in terms:
            if not term[0]:
                factor *= term[1]
            elif variable_term is None:
                variable_term = term
            else:
                self.fail(position, "product of two variables (only linear terms are supported)")
        if variable_term is None:
            return {}, factor
        return _scale(variable_term, factor)

    def atom_term(self, text: str, position: int) -> Linear:
        variable = self.variables.get(text)
        if variable is None:
            return {}, self.number(text, position)
        kind, index, declared_at = variable
        if declared_at > position:
            self.fail(position, f"variable {text} is used before its declaration")
        if kind == "X":
            self.used_inputs.add(index)
        return {text: 1.0}, 0.0

    def number(self, text: str, position: int) -> float:
        if _NUMBER.fullmatch(text):
            value = float(text)
            if not math.isfinite(value):
                self.fail(position, f"number {text} overflows float64")
            return value
        match = _VARIABLE_NAME.fullmatch(text)
        if match:
            kind = match.group(1)
            count = len(self.declared[kind])
            declared = f"{kind}_0..{kind}_{count - 1}" if count else f"no {kind}_ variables"
            self.fail(position, f"undeclared variable {text} (the file declares {declared})")
        if _LOOKS_NUMERIC.match(text):
            self.fail(position, f"bad number '{text}'")
        self.fail(position, f"unknown symbol '{text}'")

    # ----- DNF to regions -----

    def build_regions(
        self, dnfs: list[tuple[list[Branch], int]], n_in: int, n_out: int
    ) -> list[Region]:
        # Single-branch assertions hold everywhere: they form the outer box and shared rows.
        common = [dnf[0] for dnf, _ in dnfs if len(dnf) == 1]
        lo, hi = self.outer_box([bound for branch in common for bound in branch.bounds], n_in)
        common_rows = tuple(row for branch in common for row in branch.rows)
        disjunctions = [(dnf, position) for dnf, position in dnfs if len(dnf) != 1]

        rows_by_box: dict[tuple, list[tuple]] = {}
        for overrides, rows in self.expand(disjunctions, lo, hi):
            box_key = tuple(sorted(overrides.items()))
            rows_by_box.setdefault(box_key, []).append(common_rows + rows)

        outer_lo, outer_hi = np.array(lo), np.array(hi)
        return [
            self.region(outer_lo, outer_hi, box_key, row_sets, n_out)
            for box_key, row_sets in rows_by_box.items()
        ]

    def outer_box(self, bounds: list[Bound], n_in: int) -> tuple[list[float], list[float]]:
        lo, hi = [-math.inf] * n_in, [math.inf] * n_in
        for index, bound_lo, bound_hi, position in bounds:
            if bound_lo > lo[index]:
                lo[index] = bound_lo
            if bound_hi < hi[index]:
                hi[index] = bound_hi
            if lo[index] > hi[index]:
                self.fail(position, f"empty input box: X_{index} in [{lo[index]}, {hi[index]}]")
        return lo, hi

    def expand(
        self, disjunctions: list[tuple[list[Branch], int]], lo: list[float], hi: list[float]
    ) -> list[tuple[dict, tuple]]:
        """Cross product of the disjunctions: ({X_i: bounds narrower than the outer box}, rows).

        Each branch keeps its own bounds, so boxes never leak between disjuncts; a branch whose
        box is empty is dropped.
        """
        partial: list[tuple[dict, tuple]] = [({}, ())]
        for dnf, position in disjunctions:
            if len(partial) * len(dnf) > MAX_BRANCHES:
                self.fail(position, f"the DNF has more than {MAX_BRANCHES} branches")
            partial = [
                combined
                for overrides, rows in partial
                for branch in dnf
                if (combined := _intersect(overrides, rows, branch, lo, hi)) is not None
            ]
            if not partial:
                self.fail(position, "every branch of this disjunction has an empty input box")
        return partial

    def region(
        self, outer_lo: np.ndarray, outer_hi: np.ndarray, box_key: tuple, row_sets: list, n_out: int
    ) -> Region:
        lo, hi = outer_lo.copy(), outer_hi.copy()
        for index, (index_lo, index_hi) in box_key:
            lo[index], hi[index] = index_lo, index_hi
        self.check_bounded(lo, hi)
        return Region(lo, hi, [_disjunct(rows, n_out) for rows in row_sets])

    def check_bounded(self, lo: np.ndarray, hi: np.ndarray) -> None:
        unbounded = np.flatnonzero(~(np.isfinite(lo) & np.isfinite(hi)))
        if unbounded.size == 0:
            return
        index = int(unbounded[0])
        position = self.declared["X"][index]
        if index not in self.used_inputs:
            self.fail(position, f"input X_{index} is declared but never bounded")
        side = "lower" if np.isinf(lo[index]) else "upper"
        self.fail(position, f"input X_{index} has no {side} bound (every input must lie in a box)")


def _sum(terms: list[Linear]) -> Linear:
    coefficients: dict[str, float] = {}
    constant = 0.0
    for term_coefficients, term_constant in terms:
        for name, coefficient in term_coefficients.items():
            coefficients[name] = coefficients.get(name, 0.0) + coefficient
        constant += term_constant
    return coefficients, constant


def _scale(term: Linear, factor: float) -> Linear:
    coefficients, constant = term
    return {name: factor * c for name, c in coefficients.items()}, factor * constant


def _intersect(
    overrides: dict, rows: tuple, branch: Branch, lo: list[float], hi: list[float]
) -> tuple[dict, tuple] | None:
    """Add a branch's bounds and rows to a partial branch; None if its box becomes empty."""
    overrides = dict(overrides)
    for index, bound_lo, bound_hi, _ in branch.bounds:
        current_lo, current_hi = overrides.get(index, (lo[index], hi[index]))
        new_lo, new_hi = max(current_lo, bound_lo), min(current_hi, bound_hi)
        if new_lo > new_hi:
            return None
        if (new_lo, new_hi) != (lo[index], hi[index]):  # so equal boxes get equal keys
            overrides[index] = (new_lo, new_hi)
    return overrides, rows + branch.rows


def _disjunct(rows: tuple, n_out: int) -> Disjunct:
    C = np.zeros((len(rows), n_out))
    d = np.empty(len(rows))
    for r, (coefficients, bound) in enumerate(rows):
        for index, coefficient in coefficients:
            C[r, index] = coefficient
        d[r] = bound
    return Disjunct(C, d)
