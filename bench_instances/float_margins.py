"""Print, per benchmark of an instances CSV, what float32 soundness costs at the root.

    python bench_instances/float_margins.py [../shared/vnncomp/instances.csv]

For each row and input box: the root CROWN lower bound of every spec row with the float32
rounding charges (verifier/float_error.py, as every decision uses them) and without them (the
real-valued network alone); their largest difference, also relative to the row's threshold
scale 1 + |d|; and the largest eps the exact stages (z3, SDP) would need on the box.
"""
from __future__ import annotations

import csv
import sys
from contextlib import nullcontext
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import verifier.boundprop.engine as engine  # noqa: E402
from verifier import api  # noqa: E402
from verifier.float_error import output_error, real_valued_network, row_margins  # noqa: E402
from verifier.spec.region import stack_rows  # noqa: E402


def root_lower(graph64, region, C, charged: bool):
    lo = torch.as_tensor(region.lo).reshape(1, -1)
    hi = torch.as_tensor(region.hi).reshape(1, -1)
    with nullcontext() if charged else real_valued_network():
        state = engine.crown(graph64, lo, hi)
        return engine.output_lower_bounds(state, torch.as_tensor(C).unsqueeze(0))[0].numpy(), state


def row_figures(onnx_path: str, vnnlib_path: str) -> tuple[float, float, float]:
    """(largest charge, largest charge / (1 + |d|), largest exact-stage eps) over the rows."""
    graph = api.load_model(onnx_path)
    graph64 = graph.to(torch.float64)
    worst = (0.0, 0.0, 0.0)
    for region in api.load_spec(vnnlib_path, graph):
        C, d, _ = stack_rows(region)
        charged, state = root_lower(graph64, region, C, True)
        real, _ = root_lower(graph64, region, C, False)
        charge = real - charged
        eps = row_margins(*output_error(graph64, region.lo, region.hi, state.bounds), C, d)
        worst = tuple(max(a, float(b)) for a, b in
                      zip(worst, (charge.max(), (charge / (1 + np.abs(d))).max(), eps.max())))
    return worst


def main(csv_path: str) -> None:
    root = Path(csv_path).parent
    by_benchmark = defaultdict(list)
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            by_benchmark[row["benchmark"]].append(row_figures(str(root / row["onnx"]), str(root / row["vnnlib"])))
    print(f"{'benchmark':<22} {'rows':>4} {'max charge':>11} {'charge/(1+|d|)':>15} {'exact-stage eps':>16}")
    for name, figures in by_benchmark.items():
        a = np.array(figures)
        print(f"{name:<22} {len(a):>4} {a[:, 0].max():>11.2e} {a[:, 1].max():>15.2e} {a[:, 2].max():>16.2e}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/vnncomp/instances.csv")
