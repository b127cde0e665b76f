"""Every VNN-COMP row: never a wrong answer (slow: minutes; `make test-all`)."""
import csv
import os

import pytest

import verifier
from conftest import vnncomp_dir

CAP = float(os.environ.get("VNNCOMP_TIMEOUT_CAP", "60"))


def rows():
    path = vnncomp_dir() / "instances.csv"
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize("row", rows(), ids=lambda r: f"{r['benchmark']}:{r['vnnlib'].rsplit('/', 1)[-1]}")
def test_no_wrong_answer(row, vnncomp):
    result = verifier.verify(vnncomp / row["onnx"], vnncomp / row["vnnlib"],
                             timeout=min(float(row["timeout"]), CAP))
    if result.verdict in ("sat", "unsat"):
        assert result.verdict == row["expected"], f"wrong answer ({result.stage})"
