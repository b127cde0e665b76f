"""Every VNN-COMP model loads, and the IR agrees with onnxruntime inside the input box of one of
its specs (the first instances.csv row that names it)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from onnx_factory import one_torch_thread, run_onnxruntime  # noqa: F401  (a fixture)
from verifier.graph.evaluate import evaluate
from verifier.graph.onnx_loader import load_onnx
from verifier.spec.vnnlib import parse_vnnlib

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VNNCOMP_DIR = Path(
    os.environ.get("VNNCOMP_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared" / "vnncomp"
)


def _models() -> list:
    if not VNNCOMP_DIR.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no VNN-COMP dir at {VNNCOMP_DIR}"))]
    paths = sorted(VNNCOMP_DIR.rglob("*.onnx"))
    if not paths:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no .onnx files under {VNNCOMP_DIR}"))]
    return [pytest.param(p, id=str(p.relative_to(VNNCOMP_DIR))) for p in paths]


def _spec_of(model: Path) -> Path | None:
    """The vnnlib of the first instances.csv row that names this model."""
    table = VNNCOMP_DIR / "instances.csv"
    if not table.is_file():
        return None
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            if (VNNCOMP_DIR / row["onnx"]).resolve() == model.resolve():
                return VNNCOMP_DIR / row["vnnlib"]
    return None


@pytest.mark.parametrize("model", _models())
def test_model_matches_onnxruntime_in_its_input_box(model):
    graph = load_onnx(model)
    assert graph.nodes, "the model loaded to an empty graph"
    rng = np.random.default_rng(0)
    spec = _spec_of(model)
    if spec is not None:
        # the spec's sizes must be the model's (parse_vnnlib checks the declarations)
        region = parse_vnnlib(spec, n_inputs=graph.input_size, n_outputs=graph.output_size)[0]
        lo, hi = region.lo, region.hi
        x = lo + (hi - lo) * rng.random((16, lo.size))
        x = np.concatenate([x, [lo, hi, (lo + hi) / 2]])
    else:  # a model no instance uses: standard normal inputs
        x = rng.normal(size=(16, graph.input_size))
    x = x.astype(np.float32).reshape(len(x), *graph.input_shape)
    ref = run_onnxruntime(model, x).reshape(len(x), -1)
    graph64 = graph.to(torch.float64)
    values = evaluate(graph64, torch.as_tensor(x, dtype=torch.float64), keep_all=True)
    for node in graph64.nodes:
        assert tuple(values[node.name].shape[1:]) == node.shape, f"inferred shape of {node.name} ({node.op})"
    y = values[graph.output_name].flatten(1).numpy()
    assert y.shape == ref.shape == (len(x), graph.output_size)
    scale = max(float(np.abs(ref).max()), 1e-6)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * scale)
