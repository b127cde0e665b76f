import csv
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench_instances"


def vnncomp_dir() -> Path:
    return Path(os.environ.get("VNNCOMP_DIR", ROOT.parent / "shared" / "vnncomp"))


@pytest.fixture
def vnncomp():
    path = vnncomp_dir()
    if not (path / "instances.csv").is_file():
        pytest.skip(f"VNN-COMP instances not found at {path}")
    return path


def cached_models(tmp_path_factory, make, folder: str):
    """(family, seed) -> (ONNX path, Graph in float64) of a model factory's `make`, each model
    built and loaded once."""
    import torch

    from verifier.graph.onnx_loader import load_onnx

    directory = tmp_path_factory.mktemp(folder)
    cache = {}

    def get(family, seed):
        if (family, seed) not in cache:
            path = make(family, seed, directory)
            cache[family, seed] = path, load_onnx(path).to(torch.float64)
        return cache[family, seed]

    return get


def shipped_instances():
    with open(BENCH / "instances.csv") as f:
        return [dict(row, onnx=str(BENCH / row["onnx"]), vnnlib=str((BENCH / row["vnnlib"]).resolve()))
                for row in csv.DictReader(f)]
