"""The two trusted decisions: sat only after onnxruntime replay, unsat only from float64 bounds
beating each threshold by its float margin."""
import numpy as np
import pytest
import torch

from verifier.decide import into_box_float32, refuted_disjuncts, violates
from verifier.spec.region import Disjunct, Region


def test_float32_cast_is_nudged_into_the_box():
    lo = np.array([0.7, -0.7, 0.1])  # float32(0.7) < 0.7, float32(-0.7) > -0.7
    hi = lo + 1e-3
    x = into_box_float32(lo, lo, hi)
    assert x.dtype == np.float32
    assert np.all(x.astype(np.float64) >= lo) and np.all(x.astype(np.float64) <= hi)
    x = into_box_float32(hi, lo, hi)
    assert np.all(x.astype(np.float64) <= hi) and np.all(x.astype(np.float64) >= lo)


def test_a_fixed_dimension_gets_the_float32_the_model_receives():
    fixed = np.array([0.7, 0.5])  # 0.7 has no float32; 0.5 has
    x = into_box_float32(fixed, fixed, fixed)
    assert x.tolist() == [np.float32(0.7), np.float32(0.5)]


def test_no_float32_in_a_thin_box_means_no_candidate():
    lo = np.array([0.7])
    hi = np.array([np.nextafter(0.7, 1.0)])  # positive width, but no float32 inside
    assert np.float32(0.7) < lo[0] or np.float32(0.7) > hi[0]
    assert into_box_float32(lo, lo, hi) is None


def test_violates_needs_every_row_of_some_disjunct():
    region = Region(np.zeros(1), np.ones(1), [
        Disjunct(np.array([[1.0, -1.0], [0.0, 1.0]]), np.array([0.0, 5.0])),
        Disjunct(np.array([[-1.0, 0.0]]), np.array([-10.0])),
    ])
    assert violates(region, np.array([1.0, 2.0]))  # y0 <= y1 and y1 <= 5
    assert not violates(region, np.array([3.0, 2.0]))
    assert not violates(region, np.array([1.0, 6.0]))
    assert violates(region, np.array([11.0, 60.0]))  # second disjunct: y0 >= 10


def test_unsat_needs_float64_bounds():
    d = torch.zeros(1, dtype=torch.float64)
    owner = torch.zeros(1, dtype=torch.long)
    eps = torch.zeros(1, dtype=torch.float64)
    with pytest.raises(TypeError):
        refuted_disjuncts(torch.ones(1, 1, dtype=torch.float32), d, eps, owner, 1)


def test_unsat_needs_the_float_margins():
    d = torch.zeros(1, dtype=torch.float64)
    with pytest.raises(TypeError):
        refuted_disjuncts(torch.ones(1, 1, dtype=torch.float64), d, None, torch.zeros(1, dtype=torch.long), 1)


def test_unsat_needs_each_row_to_beat_its_threshold_by_its_margin():
    d = torch.tensor([2.0, -1.0], dtype=torch.float64)
    eps = torch.tensor([1e-3, 0.5], dtype=torch.float64)
    owner = torch.tensor([0, 1])
    barely = d + 0.9 * eps
    clearly = d + 1.1 * eps
    assert not refuted_disjuncts(barely.unsqueeze(0), d, eps, owner, 2).any()
    assert refuted_disjuncts(clearly.unsqueeze(0), d, eps, owner, 2).all()


def test_a_disjunct_is_refuted_by_any_one_of_its_rows():
    d = torch.zeros(3, dtype=torch.float64)
    owner = torch.tensor([0, 0, 1])
    lower = torch.tensor([[-1.0, 1.0, -1.0]], dtype=torch.float64)
    assert refuted_disjuncts(lower, d, torch.zeros(3, dtype=torch.float64), owner, 2).tolist() == [[True, False]]
