"""Low-rank SDP against CROWN, alpha-CROWN, the full SDP and the exact answer, on adversarially
trained digits MLPs.

Run from the repository root:  python bench_instances/sdp_benchmark.py [--images 8] [--full-sdp 3]

Trains small ReLU MLPs with PGD adversarial training (Madry et al.) on scikit-learn's packaged
8x8 digits (no download; seeded, CPU), saves them to bench_instances/sdp/*.onnx, and for the
first correctly classified test images and several eps compares how many L-inf robustness
specs each method certifies, and its mean time per spec:

  PGD          targeted PGD (bench_instances/generate.py) finds a counterexample: not robust;
  CROWN        plain CROWN, float64;
  alpha-CROWN  alpha-CROWN with optimised intermediate bounds (as the ReLU BaB root);
  low-rank SDP verifier.sdp.sdp_lower_bounds, certified float64 dual bounds;
  full SDP     the same relaxation by cvxpy/Clarabel (interior point), its multipliers
               certified the same way; only on the first --full-sdp specs that alpha-CROWN
               leaves open (about a minute per spec row);
  exact        verifier.verify with ReLU branch and bound (--split relu) and the SDP stage off.

A spec counts as certified when query-style float64 bounds refute every disjunct (the margin
of verifier.decide). The printed markdown table goes into README.md ("Low-rank SDP").
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import generate as gen  # noqa: E402  (digits data, box text, VNN-LIB writer, targeted PGD)

from verifier.boundprop.engine import crown, output_lower_bounds  # noqa: E402
from verifier.boundprop.optimize import Spec, optimize_bounds  # noqa: E402
from verifier.decide import refuted_disjuncts  # noqa: E402
from verifier.graph.onnx_loader import load_onnx  # noqa: E402
from verifier.sdp import INTERMEDIATE_ITERATIONS, SPEC_ITERATIONS, SolverOptions, sdp_lower_bounds  # noqa: E402
from verifier.sdp.problem import build_problem  # noqa: E402

OUT_DIR = HERE / "sdp"
NETS = {  # name: (hidden sizes, training eps)
    "adv_mlp_2x32": ((32, 32), 0.05),
    "adv_mlp_3x24": ((24, 24, 24), 0.05),
}
EPS = [0.06, 0.08, 0.1]
SDP_TIME = 6.0  # seconds per spec for the low-rank SDP
BAB_TIMEOUT = 20.0


# ---------------------------------------------------------------- training


def build(hidden) -> nn.Sequential:
    layers, width = [], 64
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 10))


def pgd_batch(model, x, y, eps, steps=7):
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    adv = lo + (hi - lo) * torch.rand_like(x)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(adv), y)
        grad, = torch.autograd.grad(loss, adv)
        adv = torch.min(torch.max(adv.detach() + 2.5 * eps / steps * grad.sign(), lo), hi)
    return adv.detach()


def train(hidden, eps: float, data, epochs: int = 60, seed: int = 0) -> nn.Sequential:
    """PGD adversarial training, eps ramped up over the first half of the epochs."""
    torch.manual_seed(seed)
    model = build(hidden)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train).long()
    order = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        e = eps * min(1.0, (epoch + 1) / (epochs / 2))
        for batch in torch.randperm(len(x), generator=order).split(64):
            adv = pgd_batch(model, x[batch], y[batch], e)
            opt.zero_grad()
            nn.functional.cross_entropy(model(adv), y[batch]).backward()
            opt.step()
    return model.eval()


def export(model: nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(1, 64),), str(path), opset_version=13, dynamo=False,
                      input_names=["input"], output_names=["output"])


# ---------------------------------------------------------------- methods


@dataclass
class Row:
    net: str
    eps: float
    specs: int = 0
    pgd: int = 0
    counts: dict = field(default_factory=dict)  # method -> certified
    times: dict = field(default_factory=dict)  # method -> total seconds
    full_tried: int = 0
    full_open: int = 0  # alpha-CROWN-open specs the full SDP was tried on


def robustness_spec(label: int) -> Spec:
    others = [j for j in range(10) if j != label]
    C = torch.zeros(9, 10, dtype=torch.float64)
    C[:, label] = 1.0
    C[torch.arange(9), others] = -1.0
    return Spec(C, torch.zeros(9, dtype=torch.float64), torch.arange(9), 9)


def certified(lower: torch.Tensor, spec: Spec) -> bool:
    """Bounds of the real-valued network compared (no float32 margin: this compares bound
    methods, it decides no instance)."""
    eps = torch.zeros_like(spec.d)
    return bool(refuted_disjuncts(lower.reshape(1, -1), spec.d, eps, spec.owner, spec.n_disjuncts).all())


def timed(fn):
    began = time.monotonic()
    out = fn()
    return out, time.monotonic() - began


def run_crown(graph, lo, hi, spec):
    state = crown(graph, lo[None], hi[None])
    return output_lower_bounds(state, spec.C[None])[0]


def run_alpha(graph, lo, hi, spec):
    state = crown(graph, lo[None], hi[None], iterations=INTERMEDIATE_ITERATIONS)
    return optimize_bounds(state, spec, SPEC_ITERATIONS)[0][0], state


def run_full_sdp(graph, state, lo, hi, spec, open_rows):
    from verifier.sdp.exact import certified_exact

    prob = build_problem(graph, state.bounds, lo, hi, spec.C).with_rows(open_rows)
    _, bounds = certified_exact(prob)
    return torch.as_tensor(bounds)


def run_exact(onnx_path: Path, vnnlib: Path) -> str:
    import verifier
    from verifier.sdp import stage

    saved, stage.BUDGET_CAP = stage.BUDGET_CAP, 0.0  # the SDP stage off: plain ReLU BaB
    try:
        return verifier.verify(str(onnx_path), str(vnnlib), timeout=BAB_TIMEOUT, split="relu").verdict
    finally:
        stage.BUDGET_CAP = saved


def evaluate_spec(row: Row, graph, model, onnx_path, data, pos, eps, full_budget: list, workdir: Path):
    x = data.x_test[pos]
    label = int(data.y_test[pos])
    lo_np, hi_np = gen.box(x, eps)
    lo, hi = torch.from_numpy(lo_np), torch.from_numpy(hi_np)
    spec = robustness_spec(label)
    row.specs += 1
    witness, t = timed(lambda: gen.pgd_attack(model, (1, 64), lo_np, hi_np, label, restarts=10, steps=100))
    row.times["PGD"] = row.times.get("PGD", 0.0) + t
    if witness is not None:
        row.pgd += 1
        return
    results = {}
    lower, t = timed(lambda: run_crown(graph, lo, hi, spec))
    results["CROWN"] = (certified(lower, spec), t)
    (alpha, state), t = timed(lambda: run_alpha(graph, lo, hi, spec))
    results["alpha-CROWN"] = (certified(alpha, spec), t)
    sdp, t = timed(lambda: sdp_lower_bounds(graph, lo, hi, spec.C, spec.d, SolverOptions(time_limit=SDP_TIME)))
    results["low-rank SDP"] = (certified(sdp.lower, spec), t)
    vnnlib = workdir / f"{onnx_path.stem}_{data.test_index[pos]}_{eps}.vnnlib"
    gen.write_vnnlib(vnnlib, onnx_path.stem, int(data.test_index[pos]), label, x, eps)
    verdict, t = timed(lambda: run_exact(onnx_path, vnnlib))
    results["exact (BaB)"] = (verdict == "unsat", t)
    row.counts.setdefault("BaB sat", 0)
    row.counts["BaB sat"] += verdict == "sat"
    open_rows = (alpha <= spec.d).nonzero().flatten()
    if not results["alpha-CROWN"][0] and full_budget[0] > 0:
        full_budget[0] -= 1
        bounds, t = timed(lambda: run_full_sdp(graph, state, lo, hi, spec, open_rows))
        full = alpha.clone()
        full[open_rows] = torch.maximum(full[open_rows], bounds)
        results["full SDP"] = (certified(full, spec), t)
        row.full_open += 1
    for name, (ok, seconds) in results.items():
        row.counts[name] = row.counts.get(name, 0) + int(ok)
        row.times[name] = row.times.get(name, 0.0) + seconds


# ---------------------------------------------------------------- report


METHODS = ["CROWN", "alpha-CROWN", "low-rank SDP", "exact (BaB)"]


def table(rows: list[Row]) -> str:
    head = ("| net | eps | specs | PGD sat | CROWN | alpha-CROWN | low-rank SDP | exact unsat (BaB) "
            "| gap closed | full SDP (tried) | mean s: alpha / SDP / BaB / full |")
    lines = [head, "|" + "---|" * head.count("|")[:-1] if False else "|" + "---|" * (head.count("|") - 1)]
    totals = Row("all", 0.0)
    for r in rows + [totals]:
        if r is not totals:
            totals.specs += r.specs
            totals.pgd += r.pgd
            totals.full_open += r.full_open
            for k, v in r.counts.items():
                totals.counts[k] = totals.counts.get(k, 0) + v
            for k, v in r.times.items():
                totals.times[k] = totals.times.get(k, 0.0) + v
        c = lambda k: r.counts.get(k, 0)
        gap = c("exact (BaB)") - c("alpha-CROWN")
        closed = f"{c('low-rank SDP') - c('alpha-CROWN')}/{gap}" + (
            f" ({100 * (c('low-rank SDP') - c('alpha-CROWN')) / gap:.0f}%)" if gap > 0 else "")
        tried = r.specs - r.pgd
        mean = lambda k, n: f"{r.times.get(k, 0.0) / n:.2f}" if n else "-"
        full = f"{c('full SDP')}/{r.full_open}" if r.full_open else "-"
        eps = "all" if r is totals else f"{r.eps:.2f}"
        lines.append(f"| {r.net} | {eps} | {r.specs} | {r.pgd} | {c('CROWN')} | {c('alpha-CROWN')} | "
                     f"{c('low-rank SDP')} | {c('exact (BaB)')} | {closed} | {full} | "
                     f"{mean('alpha-CROWN', tried)} / {mean('low-rank SDP', tried)} / "
                     f"{mean('exact (BaB)', tried)} / {mean('full SDP', r.full_open)} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8, help="test images per net (default 8)")
    parser.add_argument("--full-sdp", type=int, default=3, help="specs to give the full SDP (cvxpy), in all")
    parser.add_argument("--nets", nargs="*", default=list(NETS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    began = time.monotonic()
    data = gen.load_data()
    rows, full_budget = [], [args.full_sdp]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.nets:
            hidden, train_eps = NETS[name]
            model = train(hidden, train_eps, data)
            onnx_path = OUT_DIR / f"{name}.onnx"
            export(model, onnx_path)
            graph = load_onnx(onnx_path).to(torch.float64)
            with torch.no_grad():
                predicted = model(torch.from_numpy(data.x_test)).argmax(1).numpy()
            accuracy = float((predicted == data.y_test).mean())
            correct = np.flatnonzero(predicted == data.y_test)[: args.images]
            print(f"{name}: test accuracy {accuracy:.1%}", file=sys.stderr, flush=True)
            for eps in EPS:
                row = Row(name, eps)
                for pos in correct:
                    evaluate_spec(row, graph, model, onnx_path, data, pos, eps, full_budget, Path(tmp))
                rows.append(row)
                print(f"  eps {eps}: {row.counts}", file=sys.stderr, flush=True)
    print(table(rows))
    print(f"\n({args.images} images per net, {len(EPS)} eps; {time.monotonic() - began:.0f} s in all)")


if __name__ == "__main__":
    main()
