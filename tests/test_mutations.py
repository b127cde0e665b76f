"""Mutation tests: the soundness harness must have teeth.

Each mutant injects a known class of soundness bug into the verifier, in this process only,
with pytest's monkeypatch on a module attribute (test-only: nothing here is reachable from
the CLI). The checker then runs `verifier.api.verify` in this process (runner=API), so the
mutant takes effect, on a subset of the shipped planted instances, and must report UNSOUND.
The unmutated verifier must report no UNSOUND and no BAD-WITNESS on the same instances.
Mutant runs switch our targeted counterexample search off (`without_targeted_search`), so
that the planted instances reach the proof stages the mutants damage.

The mutants patch internals of verifier/ops, verifier/boundprop and verifier/bab; when one
of those is renamed, the patch fails loudly (monkeypatch.setattr raises) rather than
testing nothing.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import verifier.api as api
import verifier.bab.relu_split as relu_split
import verifier.pipeline as pipeline
import verifier.boundprop.engine as engine
import verifier.boundprop.optimize as optimize
import verifier.ops.activation as activation
import verifier.ops.linear as linear
from verifier.soundness import files
from verifier.soundness.check import API, check
from verifier.soundness.classify import BAD_WITNESS, CONFLICT, UNSOUND

SHIPPED = Path(__file__).resolve().parents[1] / "bench_instances" / "soundness"
INWARD = 1e-3  # relative to the box width


# ---------------------------------------------------------------- the mutants

def relu_upper_line_too_low(monkeypatch):
    """Unstable ReLU: the upper line's intercept -l u / (u - l) halved (the line cuts the kink)."""
    original = activation.relu_relaxation

    def mutant(l, u, *args, **kwargs):
        a_lo, b_lo, a_up, b_up = original(l, u, *args, **kwargs)
        return a_lo, b_lo, a_up, b_up * 0.5

    monkeypatch.setattr(activation, "relu_relaxation", mutant)


def bias_dropped_in_linear_bound(monkeypatch):
    """The backward (CROWN) rule of MatMul/Gemm forgets the layer's bias."""
    original = linear.MatMul.backward

    def mutant(self, *args, **kwargs):
        lam_inputs, _ = original(self, *args, **kwargs)
        return lam_inputs, None

    monkeypatch.setattr(linear.MatMul, "backward", mutant)


def box_rounded_inward_when_read(monkeypatch):
    """The spec's input box comes out of the parser shrunk by INWARD of its width on each side
    (what rounding lo up and hi down when casting would do, exaggerated): every stage, attack
    included, then sees the smaller box."""
    original = api.load_spec

    def mutant(*args, **kwargs):
        regions = original(*args, **kwargs)
        for region in regions:
            width = region.hi - region.lo
            region.lo, region.hi = region.lo + INWARD * width, region.hi - INWARD * width
        return regions

    monkeypatch.setattr(api, "load_spec", mutant)


def box_rounded_inward_in_bounds(monkeypatch):
    """Only the bound computation sees the box shrunk by INWARD of its width on each side."""
    original = engine.BoundState.__init__

    def mutant(self, graph, lo, hi, *args, **kwargs):
        width = hi - lo
        original(self, graph, lo + INWARD * width, hi - INWARD * width, *args, **kwargs)

    monkeypatch.setattr(engine.BoundState, "__init__", mutant)


def split_side_dropped(monkeypatch):
    """ReLU branch and bound: the inactive side of every split is lost, so the children no
    longer cover their parent (the split's disjunction x >= 0 or x <= 0 loses a case)."""
    original = relu_split._branch

    def mutant(*args, **kwargs):
        children = original(*args, **kwargs)  # active children first, then inactive
        return children.select(torch.arange(len(children) // 2))

    monkeypatch.setattr(relu_split, "_branch", mutant)


def s_curve_chord_assumed_above(monkeypatch):
    """Sigmoid/tanh: the chord taken as the upper line on every interval around 0 (it lies
    below the concave part there), and the dense-grid check that would lift it dropped."""
    original = activation.upper_line

    def mutant(f, df, l, u):
        slope, bias = original(f, df, l, u)
        chord = (f(u) - f(l)) / (u - l).clamp(min=1e-300)
        around_zero = (l < 0) & (u > 0)
        return torch.where(around_zero, chord, slope), torch.where(around_zero, f(l) - chord * l, bias)

    monkeypatch.setattr(activation, "_grid_violation", lambda f, l, u, slope, bias: torch.zeros_like(l))
    monkeypatch.setattr(activation, "upper_line", mutant)


def s_curve_lines_shifted_inward(monkeypatch):
    """Sigmoid/tanh: the dense-grid check dropped and both lines moved inward by 5% of the
    function's rise over the interval."""
    original = activation.upper_line

    def mutant(f, df, l, u):
        slope, bias = original(f, df, l, u)
        return slope, bias - 0.05 * (f(u) - f(l))

    monkeypatch.setattr(activation, "_grid_violation", lambda f, l, u, slope, bias: torch.zeros_like(l))
    monkeypatch.setattr(activation, "upper_line", mutant)


def split_multipliers_of_one_layer_dropped(monkeypatch):
    """Not a bug: beta-CROWN without the split multipliers of the first ReLU layer is looser
    but sound (the split still lives in the domain's tightened bounds)."""
    original = optimize.split_signs

    def mutant(*args, **kwargs):
        signs = original(*args, **kwargs)
        return {name: s for i, (name, s) in enumerate(signs.items()) if i > 0}

    monkeypatch.setattr(optimize, "split_signs", mutant)


def without_targeted_search(monkeypatch):
    """Not a mutant: the neuron-targeted attack and the PGD inside branch-and-bound domains
    switched off. They find most planted counterexamples before any bound is trusted, and a
    mutant in the bounds can only show where the verifier goes on to claim unsat; with them off
    the planted instances again reach the proof stages, which is what the mutants damage."""
    monkeypatch.setattr(pipeline, "targeted_attack", lambda *args, **kwargs: None)
    monkeypatch.setattr(relu_split, "_pgd_in_worst_domains", lambda *args, **kwargs: None)


# ---------------------------------------------------------------- subsets and runs

RELU, S_SHAPED, CONV = ("relu",), ("tanh", "sigmoid"), ("cnn", "resnet")


def planted(acts=None, archs=None, placement: str | None = None):
    """Selects the shipped planted instances of these activations, architectures, placement."""
    def select(row: files.Row) -> bool:
        return (row.kind == files.PLANTED and (acts is None or row.act in acts)
                and (archs is None or row.arch in archs) and (placement is None or f"_{placement}." in row.vnnlib))
    return select


def run(select, timeout: float, stop_at_failure: bool = False):
    return check(SHIPPED, timeout=timeout, runner=API, select=select, stop_at_failure=stop_at_failure,
                 log=lambda line: None)


def assert_sound(report) -> None:
    bad = [(r.row.vnnlib, r.verdict.status, r.verdict.note) for r in report.runs
           if r.verdict.status in (UNSOUND, BAD_WITNESS, CONFLICT)]
    assert not bad, bad


def assert_caught(report) -> None:
    assert report.runs, "the subset is empty: was bench_instances/soundness regenerated?"
    statuses = [(r.row.vnnlib, r.result.verdict) for r in report.runs]
    assert report.count(UNSOUND) >= 1, f"mutant not caught: {statuses}"


# ---------------------------------------------------------------- fast (CI)

def test_unmutated_verifier_on_a_few_instances():
    few = lambda row: row.arch == "mlp" or row.kind == files.CONTROL
    report = run(few, timeout=5)
    assert len(report.runs) >= 3
    assert_sound(report)


def test_dropped_bias_is_caught(monkeypatch):
    without_targeted_search(monkeypatch)
    bias_dropped_in_linear_bound(monkeypatch)
    assert_caught(run(planted(), timeout=5, stop_at_failure=True))


# ---------------------------------------------------------------- every mutant

# mutant -> (the planted instances it can show on, seconds per instance)
MUTANTS = {
    relu_upper_line_too_low: (planted(acts=RELU), 5),
    bias_dropped_in_linear_bound: (planted(), 5),
    box_rounded_inward_when_read: (planted(placement="corner"), 5),
    box_rounded_inward_in_bounds: (planted(acts=RELU, placement="corner"), 5),
    split_side_dropped: (planted(acts=RELU, archs=CONV), 5),
    s_curve_chord_assumed_above: (planted(acts=S_SHAPED), 5),
    s_curve_lines_shifted_inward: (planted(acts=S_SHAPED), 5),
}


@pytest.mark.slow
@pytest.mark.parametrize("mutant", list(MUTANTS), ids=lambda m: m.__name__)
def test_mutant_is_caught(monkeypatch, mutant):
    select, timeout = MUTANTS[mutant]
    without_targeted_search(monkeypatch)
    mutant(monkeypatch)
    assert_caught(run(select, timeout, stop_at_failure=True))


@pytest.mark.slow
def test_a_sound_weakening_is_not_flagged(monkeypatch):
    without_targeted_search(monkeypatch)
    split_multipliers_of_one_layer_dropped(monkeypatch)
    assert_sound(run(planted(acts=RELU), timeout=5))


@pytest.mark.slow
def test_unmutated_verifier_on_every_shipped_instance():
    assert_sound(run(lambda row: True, timeout=5))
