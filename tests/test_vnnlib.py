"""Tests of the VNN-LIB reader: semantics, the traps other tools fell into, errors, speed, real files."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from verifier.errors import SpecError
from verifier.spec.vnnlib import parse_vnnlib, parse_vnnlib_text

VNNCOMP_DIR = Path(
    os.environ.get("VNNCOMP_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared" / "vnncomp"
)
REAL_FILES = sorted(VNNCOMP_DIR.rglob("*.vnnlib")) if VNNCOMP_DIR.is_dir() else []


def declarations(n_inputs: int = 2, n_outputs: int = 3) -> str:
    names = [f"X_{i}" for i in range(n_inputs)] + [f"Y_{j}" for j in range(n_outputs)]
    return "".join(f"(declare-const {name} Real)\n" for name in names)


def unit_box(n_inputs: int = 2) -> str:
    return "".join(f"(assert (<= X_{i} 1))\n(assert (>= X_{i} -1))\n" for i in range(n_inputs))


def parse(body: str, n_inputs: int = 2, n_outputs: int = 3, box: bool = True):
    text = declarations(n_inputs, n_outputs) + (unit_box(n_inputs) if box else "") + body
    return parse_vnnlib_text(text, "t.vnnlib")


def rows(disjunct) -> set[tuple]:
    """A disjunct's rows as a set of (c_0, ..., c_m, d), to compare without caring for order."""
    return {(*c, d) for c, d in zip(disjunct.C.tolist(), disjunct.d.tolist())}


def only_disjunct(regions):
    assert len(regions) == 1 and len(regions[0].disjuncts) == 1
    return regions[0].disjuncts[0]


# ----- semantics -----


def test_simple_box_and_single_output_row():
    text = declarations(2, 3) + (
        "(assert (<= X_0 1))\n(assert (>= X_0 0))\n"
        "(assert (<= X_1 2.5))\n(assert (>= X_1 -1))\n"
        "(assert (<= Y_0 0.5))\n"
    )
    (region,) = parse_vnnlib_text(text)
    assert region.lo.dtype == np.float64 and region.hi.dtype == np.float64
    np.testing.assert_array_equal(region.lo, [0, -1])
    np.testing.assert_array_equal(region.hi, [1, 2.5])
    (disjunct,) = region.disjuncts
    assert disjunct.C.dtype == np.float64 and disjunct.d.dtype == np.float64
    np.testing.assert_array_equal(disjunct.C, [[1, 0, 0]])
    np.testing.assert_array_equal(disjunct.d, [0.5])


def test_greater_equal_is_normalised_to_less_equal():
    assert rows(only_disjunct(parse("(assert (>= Y_1 2))"))) == {(0, -1, 0, -2)}


def test_output_versus_output_rows():
    assert rows(only_disjunct(parse("(assert (<= Y_0 Y_2))"))) == {(1, 0, -1, 0)}
    assert rows(only_disjunct(parse("(assert (>= Y_0 Y_2))"))) == {(-1, 0, 1, 0)}


def test_general_linear_output_row():
    disjunct = only_disjunct(parse("(assert (<= (+ Y_0 (* 2 Y_1)) (- Y_2 1)))"))
    assert rows(disjunct) == {(1, 2, -1, -1)}
    disjunct = only_disjunct(parse("(assert (>= (- (* Y_1 3) Y_0 0.5) (- Y_2)))"))
    assert rows(disjunct) == {(1, -3, -1, -0.5)}


def test_constant_on_the_left():
    assert rows(only_disjunct(parse("(assert (>= 3.5 Y_0))"))) == {(1, 0, 0, 3.5)}
    (region,) = parse("(assert (>= 0.25 X_0))\n(assert (<= -0.5 X_1))")
    np.testing.assert_array_equal(region.hi, [0.25, 1])
    np.testing.assert_array_equal(region.lo, [-1, -0.5])


@pytest.mark.parametrize(
    "number, value",
    [
        ("1", 1.0),
        ("-0.5", -0.5),
        (".5", 0.5),
        ("1e-3", 1e-3),
        ("-1.5e-3", -1.5e-3),
        ("1E2", 100.0),
        ("-1.5E+02", -150.0),
        ("(- 0.5)", -0.5),
        ("(- (- 2))", 2.0),
        ("+3.", 3.0),
    ],
)
def test_number_syntax(number, value):
    body = (
        f"(assert (<= Y_0 {number}))\n(assert (<= X_0 {number}))\n(assert (>= X_0 (- {number} 1)))\n"
        "(assert (<= X_1 1))\n(assert (>= X_1 0))\n"
    )
    (region,) = parse(body, box=False)
    assert region.disjuncts[0].d.tolist() == [value]
    assert (region.lo[0], region.hi[0]) == (value - 1, value)


def test_strict_comparisons_are_non_strict():
    (region,) = parse("(assert (< X_0 0.5))\n(assert (> X_1 -0.5))\n(assert (< Y_0 2))")
    np.testing.assert_array_equal(region.hi, [0.5, 1])
    np.testing.assert_array_equal(region.lo, [-1, -0.5])
    assert rows(region.disjuncts[0]) == {(1, 0, 0, 2)}


def test_input_bounds_after_moving_terms():
    (region,) = parse("(assert (<= (+ X_0 1) 1.5))\n(assert (>= (* -2 X_1) 1))")
    np.testing.assert_array_equal(region.hi, [0.5, -0.5])


def test_comments_are_ignored_even_with_parentheses():
    (region,) = parse("; (assert (<= X_0 -5))\n(assert (<= Y_0 1)) ; (or\n")
    np.testing.assert_array_equal(region.lo, [-1, -1])


def test_or_followed_by_more_asserts_applies_them_to_every_branch():
    text = declarations(2, 3) + (
        "(assert (or (<= Y_0 0) (<= Y_1 0)))\n"
        "(assert (<= Y_2 5))\n" + unit_box(2)  # the box comes after the or, too
    )
    (region,) = parse_vnnlib_text(text)
    np.testing.assert_array_equal(region.lo, [-1, -1])
    np.testing.assert_array_equal(region.hi, [1, 1])
    assert [rows(d) for d in region.disjuncts] == [
        {(1, 0, 0, 0), (0, 0, 1, 5)},
        {(0, 1, 0, 0), (0, 0, 1, 5)},
    ]


ACAS_PROP_6_SHAPE = declarations(5, 5) + """
(assert (or
    (and (<= X_0 0.7) (>= X_0 -0.1) (<= X_1 0.5) (>= X_1 0.1) (<= X_2 -0.49) (>= X_2 -0.5)
         (<= X_3 0.5) (>= X_3 -0.5) (<= X_4 0.5) (>= X_4 -0.5))
    (and (<= X_0 0.7) (>= X_0 -0.1) (<= X_1 -0.1) (>= X_1 -0.5) (<= X_2 -0.49) (>= X_2 -0.5)
         (<= X_3 0.5) (>= X_3 -0.5) (<= X_4 0.5) (>= X_4 -0.5))
))
(assert (or
    (and (<= Y_1 Y_0))
    (and (<= Y_2 Y_0))
    (and (<= Y_3 Y_0))
    (and (<= Y_4 Y_0))
))
"""


def test_boxes_do_not_leak_between_disjuncts():
    regions = parse_vnnlib_text(ACAS_PROP_6_SHAPE)
    assert len(regions) == 2
    assert [r.lo[1] for r in regions] == [0.1, -0.5]
    assert [r.hi[1] for r in regions] == [0.5, -0.1]
    for region in regions:
        np.testing.assert_array_equal(region.lo[[0, 2, 3, 4]], [-0.1, -0.5, -0.5, -0.5])
        np.testing.assert_array_equal(region.hi[[0, 2, 3, 4]], [0.7, -0.49, 0.5, 0.5])
        assert [rows(d) for d in region.disjuncts] == [
            {tuple([-1] + [1 if k == j else 0 for k in range(1, 5)] + [0])} for j in range(1, 5)
        ]


def test_disjunct_box_is_intersected_with_a_later_outer_box():
    text = declarations(2, 3) + (
        "(assert (or (and (>= X_0 0.5) (<= Y_0 0)) (and (<= X_0 -0.5) (<= Y_1 0))))\n"
        + unit_box(2)
    )
    first, second = parse_vnnlib_text(text)
    assert (first.lo[0], first.hi[0]) == (0.5, 1)
    assert (second.lo[0], second.hi[0]) == (-1, -0.5)
    assert [rows(d) for d in first.disjuncts] == [{(1, 0, 0, 0)}]
    assert [rows(d) for d in second.disjuncts] == [{(0, 1, 0, 0)}]


def test_branches_with_identical_boxes_share_a_region():
    body = (
        "(assert (or (and (<= X_0 0.5) (<= Y_0 0)) (and (<= X_0 0.5) (<= Y_1 0))"
        " (and (<= X_0 2) (<= Y_2 0)) (<= Y_2 1)))"
    )
    narrow, outer = parse(body)
    assert narrow.hi[0] == 0.5 and len(narrow.disjuncts) == 2
    # X_0 <= 2 is looser than the outer box, so that branch has the outer box.
    assert outer.hi[0] == 1 and [rows(d) for d in outer.disjuncts] == [
        {(0, 0, 1, 0)},
        {(0, 0, 1, 1)},
    ]


def test_nested_and_or():
    body = "(assert (and (or (and (<= Y_0 0) (or (<= Y_1 0) (<= Y_1 -1))) (<= Y_2 0)) (<= Y_0 9)))"
    (region,) = parse(body)
    assert [rows(d) for d in region.disjuncts] == [
        {(1, 0, 0, 0), (0, 1, 0, 0), (1, 0, 0, 9)},
        {(1, 0, 0, 0), (0, 1, 0, -1), (1, 0, 0, 9)},
        {(0, 0, 1, 0), (1, 0, 0, 9)},
    ]


def test_and_directly_under_assert():
    text = declarations(2, 3) + (
        "(assert (and (<= X_0 1) (>= X_0 0) (<= X_1 3) (>= X_1 2) (>= Y_0 Y_1) (<= Y_2 4)))\n"
    )
    (region,) = parse_vnnlib_text(text)
    np.testing.assert_array_equal(region.lo, [0, 2])
    np.testing.assert_array_equal(region.hi, [1, 3])
    assert [rows(d) for d in region.disjuncts] == [{(-1, 1, 0, 0), (0, 0, 1, 4)}]


def test_cross_product_of_two_output_ors():
    (region,) = parse("(assert (or (<= Y_0 0) (<= Y_1 0)))\n(assert (or (<= Y_2 0) (>= Y_0 1)))")
    assert [rows(d) for d in region.disjuncts] == [
        {(1, 0, 0, 0), (0, 0, 1, 0)},
        {(1, 0, 0, 0), (-1, 0, 0, -1)},
        {(0, 1, 0, 0), (0, 0, 1, 0)},
        {(0, 1, 0, 0), (-1, 0, 0, -1)},
    ]


def test_no_output_constraint_gives_a_zero_row_disjunct():
    (region,) = parse("")
    (disjunct,) = region.disjuncts
    assert disjunct.C.shape == (0, 3) and disjunct.d.shape == (0,)


def test_branch_contradicting_the_outer_box_is_dropped():
    (region,) = parse("(assert (or (and (>= X_0 5) (<= Y_0 0)) (<= Y_1 0)))")
    assert [rows(d) for d in region.disjuncts] == [{(0, 1, 0, 0)}]


# ----- a property test against a direct evaluation of the formula -----

GRID = [-1.0, -0.5, 0.0, 0.5, 1.0]


def _atoms():
    variable = st.sampled_from(["X_0", "X_1", "Y_0", "Y_1"])
    return st.builds(
        lambda op, name, c: (f"({op} {name} {c})", (op, name, c)),
        st.sampled_from(["<=", ">="]),
        variable,
        st.sampled_from(GRID),
    )


def _combine(children):
    return st.builds(
        lambda op, parts: (
            f"({op} {' '.join(text for text, _ in parts)})",
            (op, [tree for _, tree in parts]),
        ),
        st.sampled_from(["and", "or"]),
        st.lists(children, min_size=1, max_size=3),
    )


FORMULAS = st.recursive(_atoms(), _combine, max_leaves=8)


def _holds(tree, point: dict[str, float]) -> bool:
    op, *rest = tree
    if op in ("and", "or"):
        results = [_holds(child, point) for child in rest[0]]
        return all(results) if op == "and" else any(results)
    name, c = rest
    return point[name] <= c if op == "<=" else point[name] >= c


def _in_unsafe_set(regions, x: np.ndarray, y: np.ndarray) -> bool:
    return any(
        np.all(r.lo <= x) and np.all(x <= r.hi) and any(np.all(d.C @ y <= d.d) for d in r.disjuncts)
        for r in regions
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FORMULAS, min_size=1, max_size=3))
def test_regions_agree_with_the_formula_pointwise(formulas):
    body = "".join(f"(assert {text})\n" for text, _ in formulas)
    try:
        regions = parse(body, n_inputs=2, n_outputs=2)
    except SpecError as e:
        assume("empty input box" not in str(e))
        raise
    for x0 in GRID:
        for x1 in GRID:
            for y0 in GRID:
                for y1 in GRID:
                    point = {"X_0": x0, "X_1": x1, "Y_0": y0, "Y_1": y1}
                    expected = all(_holds(tree, point) for _, tree in formulas)
                    actual = _in_unsafe_set(regions, np.array([x0, x1]), np.array([y0, y1]))
                    assert actual == expected, point


# ----- errors: the message names the file and the line where the bad expression starts -----

MARK = "; <-"
DECLS = declarations(2, 3)  # lines 1-5
BOX = unit_box(2)  # lines after the declarations


def error_message(text: str, **model_sizes) -> str:
    with pytest.raises(SpecError) as info:
        parse_vnnlib_text(text, "bad.vnnlib", **model_sizes)
    return str(info.value)


def marked_line(text: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if MARK in line)


ERROR_CASES = {
    "unclosed paren": (
        DECLS + BOX + f"(assert (<= Y_0 1) {MARK}\n(assert (<= Y_1 1))\n",
        "unbalanced parentheses",
    ),
    "extra closing paren": (DECLS + BOX + f"(assert (<= Y_0 1))) {MARK}\n", "unbalanced"),
    "unknown operator": (DECLS + BOX + f"(assert (=> Y_0 1)) {MARK}\n", "unknown operator '=>'"),
    "unknown operator in a term": (
        DECLS + BOX + f"(assert\n  (<= (/ Y_0 2) 1)) {MARK}\n",
        "unknown operator '/'",
    ),
    "unknown command": (DECLS + BOX + f"(check-sat) {MARK}\n", "unknown command"),
    "undeclared variable": (DECLS + BOX + f"(assert (<= Y_7 1)) {MARK}\n", "undeclared variable Y_7"),
    "undeclared variable deep in a multi-line or": (
        DECLS + BOX + f"(assert (or\n  (and (<= Y_0 1))\n  (and (<= Y_9 1)) {MARK}\n))\n",
        "undeclared variable Y_9",
    ),
    "used before declared": (
        f"(assert (<= Y_0 1)) {MARK}\n" + DECLS + BOX,
        "used before its declaration",
    ),
    "input used before declared": (
        f"(assert (<= X_0 1)) {MARK}\n" + DECLS + BOX,
        "used before its declaration",
    ),
    "bad number": (DECLS + BOX + f"(assert (<= Y_0 1.2.3)) {MARK}\n", "bad number '1.2.3'"),
    "unknown symbol": (DECLS + BOX + f"(assert (<= Y_0 inf)) {MARK}\n", "unknown symbol 'inf'"),
    "unbounded input": (
        "(declare-const X_0 Real)\n"
        f"(declare-const X_1 Real) {MARK}\n"
        "(declare-const Y_0 Real)\n"
        "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= X_1 1))\n",
        "X_1 has no lower bound",
    ),
    "unused input": (
        f"(declare-const X_0 Real) {MARK}\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
        "(assert (<= X_1 1))\n(assert (>= X_1 0))\n",
        "X_0 is declared but never bounded",
    ),
    "input bounded in one branch only": (
        "(declare-const X_0 Real)\n"
        f"(declare-const X_1 Real) {MARK}\n(declare-const Y_0 Real)\n"
        "(assert (<= X_0 1))\n(assert (>= X_0 0))\n"
        "(assert (or (and (<= X_1 1) (>= X_1 0)) (<= Y_0 0)))\n",
        "X_1 has no",
    ),
    "empty box": (
        DECLS + "(assert (<= X_0 1))\n(assert (>= X_1 -1))\n(assert (<= X_1 1))\n"
        f"(assert (>= X_0 2)) {MARK}\n",
        "empty input box",
    ),
    "every disjunct empty": (
        DECLS + BOX + f"(assert (or (>= X_0 2) (<= X_0 -3))) {MARK}\n",
        "empty input box",
    ),
    "X and Y mixed": (DECLS + BOX + f"(assert (<= X_0 Y_0)) {MARK}\n", "mixes inputs"),
    "linear input constraint": (
        DECLS + BOX + f"(assert (<= (+ X_0 X_1) 1)) {MARK}\n",
        "input constraints must be bounds on a single X_i",
    ),
    "product of variables": (
        DECLS + BOX + f"(assert (<= (* Y_0 Y_1) 1)) {MARK}\n",
        "product of two variables",
    ),
    "index gap": (
        "(declare-const X_0 Real)\n"
        f"(declare-const X_2 Real) {MARK}\n(declare-const Y_0 Real)\n",
        "variable index out of range: X_2",
    ),
    "duplicate declaration": (
        DECLS + f"(declare-const Y_1 Real) {MARK}\n", "Y_1 is declared twice",
    ),
    "bad sort": (f"(declare-const X_0 Int) {MARK}\n", "unsupported sort 'Int'"),
    "comparison with three operands": (
        DECLS + BOX + f"(assert (<= Y_0 Y_1 Y_2)) {MARK}\n", "takes 2 operands",
    ),
    "too many branches": (
        DECLS + BOX + "".join(
            "(assert (or " + " ".join(f"(<= Y_{k % 3} {j})" for j in range(50)) + f")) {MARK}\n"
            for k in range(3)
        ).replace(MARK, "", 2),
        "more than 100000 branches",
    ),
    "too many branches inside one assert": (
        DECLS + BOX + f"(assert (and {MARK}\n"
        + "".join("(or " + " ".join(f"(<= Y_0 {j})" for j in range(50)) + ")\n" for _ in range(3))
        + "))\n",
        "more than 100000 branches",
    ),
}

@pytest.mark.parametrize("case", ERROR_CASES)
def test_error_names_file_and_line(case):
    text, fragment = ERROR_CASES[case]
    message = error_message(text)
    assert message.startswith(f"bad.vnnlib:{marked_line(text)}: "), message
    assert fragment in message


def test_input_count_mismatch():
    text = declarations(2, 3) + unit_box(2)
    message = error_message(text, n_inputs=3)
    assert message == "bad.vnnlib:2: declares 2 inputs X_i but the model has 3"
    assert "declares 3 outputs Y_j but the model has 4" in error_message(text, n_outputs=4)
    assert len(parse_vnnlib_text(text, "ok.vnnlib", n_inputs=2, n_outputs=3)) == 1


def test_missing_file(tmp_path):
    path = tmp_path / "nope.vnnlib"
    with pytest.raises(SpecError, match=re.escape(f"{path}: file not found")):
        parse_vnnlib(path)


def test_file_errors_name_the_path(tmp_path):
    path = tmp_path / "p.vnnlib"
    path.write_text(DECLS + BOX + "(assert (<= Y_0 1)\n")
    with pytest.raises(SpecError, match=re.escape(f"{path}:10: unbalanced")):
        parse_vnnlib(str(path))


# ----- speed -----


def cifar_like_spec(n_inputs: int = 3072, n_outputs: int = 10, label: int = 3) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(n_inputs)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_outputs)]
    for i in range(n_inputs):
        lines += [f"(assert (<= X_{i} 0.5))", f"(assert (>= X_{i} -0.5))"]
    others = [j for j in range(n_outputs) if j != label]
    lines.append("(assert (or\n" + "\n".join(f"    (and (>= Y_{j} Y_{label}))" for j in others) + "\n))")
    return "\n".join(lines) + "\n"


def best_parse_time(path: Path, repeats: int = 3) -> tuple[float, list]:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        regions = parse_vnnlib(path)
        best = min(best, time.perf_counter() - start)
    return best, regions


def test_large_spec_parses_fast(tmp_path):
    path = tmp_path / "cifar.vnnlib"
    path.write_text(cifar_like_spec())
    seconds, regions = best_parse_time(path)
    assert seconds < 0.5, f"{seconds:.3f} s"
    (region,) = regions
    assert np.all(region.lo == -0.5) and np.all(region.hi == 0.5) and region.n_inputs == 3072
    assert len(region.disjuncts) == 9 and all(d.C.shape == (1, 10) for d in region.disjuncts)


# ----- the real VNN-COMP files -----


def _real_files_or_skip():
    if not REAL_FILES:
        pytest.skip(f"no .vnnlib files under {VNNCOMP_DIR}")
    return REAL_FILES


@pytest.mark.parametrize(
    "path", REAL_FILES or [None], ids=lambda p: str(p.relative_to(VNNCOMP_DIR)) if p else "absent"
)
def test_real_file_parses_to_consistent_regions(path):
    if path is None:
        pytest.skip(f"no .vnnlib files under {VNNCOMP_DIR}")
    regions = parse_vnnlib(path)
    assert regions
    n_inputs, n_outputs = regions[0].n_inputs, regions[0].disjuncts[0].C.shape[1]
    for region in regions:
        assert region.lo.shape == region.hi.shape == (n_inputs,)
        assert np.all(np.isfinite(region.lo)) and np.all(np.isfinite(region.hi))
        assert np.all(region.lo <= region.hi)
        assert region.disjuncts
        for disjunct in region.disjuncts:
            assert disjunct.C.ndim == 2 and disjunct.C.shape == (disjunct.d.size, n_outputs)
            assert np.all(np.isfinite(disjunct.C)) and np.all(np.isfinite(disjunct.d))
    assert len(parse_vnnlib(path, n_inputs=n_inputs, n_outputs=n_outputs)) == len(regions)


_TOP_LEVEL_BOUND = re.compile(
    r"^\(assert \((<=|>=) X_(\d+) ([-+.\deE]+)\)\)\s*$", re.MULTILINE
)


def test_real_outer_boxes_match_a_line_by_line_reading():
    """Where every X bound is a one-line top-level assert, lo/hi must be exactly those numbers."""
    checked = 0
    for path in _real_files_or_skip():
        text = path.read_text()
        bounds = _TOP_LEVEL_BOUND.findall(text)
        if len(bounds) != len(re.findall(r"\bX_\d+", text)) - text.count("(declare-const X_"):
            continue  # some X appears elsewhere (inside an or): not a plain box
        (region,) = parse_vnnlib(path)
        lo, hi = np.full(region.n_inputs, -np.inf), np.full(region.n_inputs, np.inf)
        for op, index, value in bounds:
            i = int(index)
            if op == "<=":
                hi[i] = min(hi[i], float(value))
            else:
                lo[i] = max(lo[i], float(value))
        np.testing.assert_array_equal(region.lo, lo, err_msg=str(path))
        np.testing.assert_array_equal(region.hi, hi, err_msg=str(path))
        checked += 1
    assert checked >= len(REAL_FILES) // 2


def test_real_acasxu_prop_6_gives_two_regions_of_four_disjuncts():
    path = VNNCOMP_DIR / "acasxu" / "vnnlib" / "prop_6.vnnlib"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    regions = parse_vnnlib(path, n_inputs=5, n_outputs=5)
    assert [len(r.disjuncts) for r in regions] == [4, 4]
    assert [(r.lo[1], r.hi[1]) for r in regions] == [
        (0.11140846, 0.499999896),
        (-0.499999896, -0.11140846),
    ]
    np.testing.assert_array_equal(regions[0].lo[[0, 2, 3, 4]], regions[1].lo[[0, 2, 3, 4]])
    for region in regions:
        for j, disjunct in enumerate(region.disjuncts, start=1):
            expected = np.zeros((1, 5))
            expected[0, 0], expected[0, j] = -1, 1  # Y_j <= Y_0
            np.testing.assert_array_equal(disjunct.C, expected)


def test_biggest_real_file_parses_fast():
    biggest = max(_real_files_or_skip(), key=lambda p: p.stat().st_size)
    seconds, regions = best_parse_time(biggest)
    print(f"\n{biggest.relative_to(VNNCOMP_DIR)}: {biggest.stat().st_size} bytes, {seconds:.3f} s")
    assert seconds < 0.5
    assert regions
