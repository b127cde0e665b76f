"""Certificates for the unsat rows of ../shared/vnncomp: verify with --certificate, then
check-certificate, each as a fresh `python cli.py` process (start-up included, as VNN-COMP times
tools), one row at a time. Writes a CSV and prints a per-benchmark summary.

    python bench_instances/certificate_benchmark.py [--root ../shared/vnncomp] [--filter acasxu]
        [--out certificates.csv] [--keep DIR] [--timeout-factor F]

--timeout-factor multiplies each row's timeout (a busy machine needs more to certify at all).
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = ("acasxu", "mnist_fc", "tllverifybench", "rl_benchmarks", "reach_prob_density", "collins_rul_cnn", "test")


def run(command: list[str], timeout: float) -> tuple[str, str, float, int]:
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        out, err, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired:
        out, err, code = "killed\n", "", -1
    return out, err, time.monotonic() - started, code


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "vnncomp"))
    parser.add_argument("--filter", default="")
    parser.add_argument("--out", default="certificates.csv")
    parser.add_argument("--keep", help="keep the certificates in this folder")
    parser.add_argument("--timeout-factor", type=float, default=1.0)
    args = parser.parse_args()
    root = Path(args.root)
    rows = []
    with open(root / "instances.csv") as f:
        for row in csv.DictReader(f):
            if row["expected"] == "unsat" and row["benchmark"] in BENCHMARKS and args.filter in row["onnx"] + row["vnnlib"]:
                rows.append(row)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="certificates"))
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for i, row in enumerate(rows):
        model, spec = str(root / row["onnx"]), str(root / row["vnnlib"])
        timeout = float(row["timeout"]) * args.timeout_factor
        certificate = str(folder / f"{i:03d}.npz")
        out, err, verify_s, _ = run([sys.executable, "cli.py", "verify", model, spec, "--timeout", str(timeout),
                                     "--certificate", certificate], timeout + 30)
        verdict = out.split("\n")[0]
        size = os.path.getsize(certificate) if os.path.exists(certificate) and verdict == "unsat" else 0
        check, check_s, check_err = "", 0.0, ""
        if size:
            out, check_err, check_s, _ = run([sys.executable, "cli.py", "check-certificate", model, spec, certificate],
                                             max(600.0, 4 * verify_s))
            check = out.split("\n")[0]
        results.append({"benchmark": row["benchmark"], "onnx": row["onnx"], "vnnlib": row["vnnlib"], "verdict": verdict,
                        "verify_s": f"{verify_s:.2f}", "certificate_bytes": size, "check": check,
                        "check_s": f"{check_s:.2f}", "verify_note": err.strip().splitlines()[-1] if err.strip() else "",
                        "check_note": check_err.strip().splitlines()[-1] if check_err.strip() else ""})
        r = results[-1]
        print(f"{r['benchmark']:18} {Path(r['onnx']).name[:34]:34} {Path(r['vnnlib']).name[:34]:34} {verdict:8} "
              f"{verify_s:7.2f} s {size / 1024:8.1f} KiB  {check[:40]:40} {check_s:6.2f} s", flush=True)
        if not args.keep and os.path.exists(certificate):
            os.remove(certificate)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    print("\nbenchmark           rows  certified  KiB (median, max)   verify s  check s  check <= verify")
    for name in BENCHMARKS:
        mine = [r for r in results if r["benchmark"] == name]
        if not mine:
            continue
        valid = [r for r in mine if r["check"].startswith("valid")]
        sizes = sorted(r["certificate_bytes"] / 1024 for r in valid) or [0]
        faster = sum(float(r["check_s"]) <= float(r["verify_s"]) for r in valid)
        print(f"{name:18} {len(mine):5} {len(valid):10}  {sizes[len(sizes) // 2]:8.1f} {sizes[-1]:8.1f}   "
              f"{sum(float(r['verify_s']) for r in mine):8.1f} {sum(float(r['check_s']) for r in valid):8.1f}  "
              f"{faster}/{len(valid)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
