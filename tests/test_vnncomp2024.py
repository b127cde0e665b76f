"""The VNN-COMP 2024 networks (slow; they skip without ../shared/vnncomp2024 or
$VNNCOMP2024_DIR): every network loads, evaluates like onnxruntime in its spec's box, and gets
IBP and CROWN bounds that contain onnxruntime's outputs at sampled points of the box; the sat
rows of cctsdb_yolo, traffic_signs_recognition and cgan are found with counterexamples that
onnxruntime confirms."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import verifier
from onnx_factory import one_torch_thread, run_onnxruntime  # noqa: F401  (a fixture)
from test_verify import replay
from verifier.api import bounds as model_bounds
from verifier.decide import violates
from verifier.graph.evaluate import evaluate
from verifier.graph.onnx_loader import load_onnx
from verifier.spec.vnnlib import parse_vnnlib

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

DIR = Path(os.environ.get("VNNCOMP2024_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "vnncomp2024")


def _rows(benchmark: str | None = None, expected: str | None = None) -> list:
    table = DIR / "instances.csv"
    if not table.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no VNN-COMP 2024 instances at {DIR}"))]
    with open(table, newline="") as f:
        rows = [r for r in csv.DictReader(f)
                if (benchmark is None or r["benchmark"] == benchmark) and (expected is None or r["expected"] == expected)]
    return [pytest.param(r, id=Path(r["vnnlib"]).stem) for r in rows]


def _first_row_per_network() -> list:
    seen, params = set(), []
    for param in _rows():
        row = param.values[0]
        if row is None:
            return [param]
        if row["onnx"] not in seen:
            seen.add(row["onnx"])
            params.append(pytest.param(row, id=row["onnx"]))
    return params


@pytest.mark.parametrize("row", _first_row_per_network())
def test_network_matches_onnxruntime_in_its_box(row):
    model, graph, region, x, reference = _sampled(row)
    y = evaluate(graph.to(torch.float64), torch.as_tensor(x, dtype=torch.float64)).reshape(len(x), -1).numpy()
    scale = max(float(np.abs(reference).max()), 1e-6)
    np.testing.assert_allclose(y, reference, rtol=1e-5, atol=1e-5 * scale)



def _sampled(row):
    """The network, its first region, 19 float32 points of the box (16 random, both corners,
    the centre) and onnxruntime's outputs there."""
    model = DIR / row["onnx"]
    graph = load_onnx(model)
    region = parse_vnnlib(DIR / row["vnnlib"], n_inputs=graph.input_size, n_outputs=graph.output_size)[0]
    rng = np.random.default_rng(0)
    x = np.concatenate([region.lo + (region.hi - region.lo) * rng.random((16, region.lo.size)),
                        [region.lo, region.hi, (region.lo + region.hi) / 2]])
    x = x.astype(np.float32).reshape(len(x), *graph.input_shape)
    return model, graph, region, x, run_onnxruntime(model, x).reshape(len(x), -1)


@pytest.mark.parametrize("row", _first_row_per_network())
@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_bounds_contain_onnxruntime_outputs(row, method):
    """`cli.py bounds --method ibp|crown` on the spec's box (the float32 rounding charged):
    never NaN, containing onnxruntime's outputs at the sampled points, and CROWN's finite
    wherever IBP's are (cctsdb_yolo's ArgMax and Where have no relaxation: infinite there)."""
    _, graph, region, x, reference = _sampled(row)
    inside = ((x.reshape(len(x), -1) >= region.lo) & (x.reshape(len(x), -1) <= region.hi)).all(1)
    lower, upper = model_bounds(graph, region, method=method)
    assert (lower <= upper).all()  # False for NaN
    assert (reference[inside] >= lower).all() and (reference[inside] <= upper).all()
    if method == "crown" and np.isfinite(model_bounds(graph, region, method="ibp")).all():
        assert np.isfinite(lower).all() and np.isfinite(upper).all()


def _assert_found(model, spec, timeout=120.0, confirm_on=None):
    result = verifier.verify(model, spec, timeout=timeout)
    assert result.verdict == "sat", result
    region = parse_vnnlib(spec)[0]
    x = result.witness.x
    # inside the box; a fixed input gets the float32 nearest its value (verifier.decide)
    assert ((x >= region.lo) & (x <= region.hi) | (region.lo == region.hi)).all()
    assert violates(region, replay(confirm_on or model, x))


@pytest.mark.parametrize("row", _rows("cctsdb_yolo_2023", "sat"))
def test_cctsdb_yolo_sat_rows_are_found(row):
    _assert_found(str(DIR / row["onnx"]), str(DIR / row["vnnlib"]))


@pytest.mark.parametrize("row", _rows("cgan_2023", "sat"))
def test_cgan_sat_rows_are_found(row):
    _assert_found(str(DIR / row["onnx"]), str(DIR / row["vnnlib"]))


@pytest.mark.parametrize("row", _rows("traffic_signs_recognition_2023", "sat"))
def test_traffic_signs_sat_rows_are_found(row):
    """Through the final Softmax (the attack searches its logits)."""
    _assert_found(str(DIR / row["onnx"]), str(DIR / row["vnnlib"]))
