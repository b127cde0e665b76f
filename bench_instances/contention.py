"""Does a run take the same path on a busy machine? Each selected row of a VNN-COMP style
instances.csv runs alone, then beside bursty background load, and the table gives, for both, the
verdict, the time and the path (Result.stage: the stage that decided, with its tree size).

Run from the repository root:
    python bench_instances/contention.py [--csv ../shared/vnncomp/instances.csv] [--row ONNX,VNNLIB ...]
                                         [--timeout 120] [--load 3] [--seed 0]

Each run is a warm worker of the bench (forked from a process that imported torch once, so start-up
noise stays out of the times) with the verifier's default threads. The background load is bursty:
busy phases of 1-4 s during which up to --load short processes run at once (each a fresh Python
process spinning for 0.05-1.5 s, then exiting), separated by idle gaps of 0.5-2 s (seeded).
A row is "same" when verdict and path agree; the slowdown is loaded time / time alone.
"""
from __future__ import annotations

import argparse
import csv
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from verifier.bench import warm  # noqa: E402
from verifier.bench.report import format_table  # noqa: E402
from verifier.processes import kill_group  # noqa: E402

DEFAULT_CSV = REPO.parent / "shared" / "vnncomp" / "instances.csv"
# onnx and vnnlib substrings: the ACAS Xu rows that timed out beside three low-priority jobs in issue
# 18's run, two tllverifybench rows (forward-mode and CROWN intermediate bounds), one eran row
DEFAULT_ROWS = ("ACASXU_run2a_1_1_batch,prop_6.", "ACASXU_run2a_3_3_batch,prop_9.", "ACASXU_run2a_1_7_batch,prop_2.",
                "ACASXU_run2a_5_1_batch,prop_3.", "ACASXU_run2a_1_8_batch,prop_2.", "N=M=24_m=1_instance_2_1,N=24_1",
                "N=M=8_m=1_instance_0_0,N=8_0", "mnist_relu_9_200,idx_742_")
KILL_AFTER_SECONDS = 5.0
SPIN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


def select_rows(csv_path: Path, patterns: list[str]) -> list[dict[str, str]]:
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    chosen = []
    for pattern in patterns:
        onnx_part, _, vnnlib_part = pattern.partition(",")
        matches = [r for r in rows if onnx_part in r["onnx"] and vnnlib_part in r["vnnlib"]]
        if not matches:
            sys.exit(f"error: {csv_path}: no row whose onnx contains {onnx_part!r} and vnnlib {vnnlib_part!r}")
        chosen += [r for r in matches if r not in chosen]
    return chosen


def run_row(folder: Path, row: dict[str, str], timeout: float) -> tuple[str, str, float]:
    """(verdict, path, seconds) of one warm worker, killed KILL_AFTER_SECONDS after its timeout."""
    receive, send = warm.context().Pipe(duplex=False)
    worker = warm.context().Process(target=warm.result_in_worker,
                                    args=(str(folder / row["onnx"]), str(folder / row["vnnlib"]), timeout, send))
    started = time.monotonic()
    worker.start()
    send.close()
    if receive.poll(timeout + KILL_AFTER_SECONDS):
        try:
            verdict, stage, seconds = receive.recv()
        except EOFError:
            verdict, stage, seconds = "error", "worker died", time.monotonic() - started
    else:
        verdict, stage, seconds = "timeout", "killed by the benchmark", time.monotonic() - started
    kill_group(worker.pid)
    worker.join()
    return verdict, stage, seconds


def run_logged(folder: Path, row: dict[str, str], timeout: float, label: str) -> tuple[str, str, float]:
    """run_row under min(timeout, the row's), with a line on stderr once it ends."""
    verdict, stage, seconds = run_row(folder, row, min(timeout, float(row["timeout"])))
    print(f"{label}: {row['onnx']} {row['vnnlib']}: {verdict} ({stage}) in {seconds:.1f} s", file=sys.stderr, flush=True)
    return verdict, stage, seconds


class BurstyLoad:
    """Short busy processes started in bursts from a thread, until stop()."""

    def __init__(self, processes: int, seed: int):
        self.processes, self.random = processes, random.Random(seed)
        self.stopping = threading.Event()
        self.started = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "BurstyLoad":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join()

    def _run(self) -> None:
        running: list[subprocess.Popen] = []
        while not self.stopping.is_set():
            burst_end = time.monotonic() + self.random.uniform(1.0, 4.0)
            while time.monotonic() < burst_end and not self.stopping.is_set():
                running = [p for p in running if p.poll() is None]
                if len(running) < self.processes:
                    seconds = self.random.uniform(0.05, 1.5)
                    running.append(subprocess.Popen([sys.executable, "-c", SPIN, f"{seconds:.3f}"]))
                    self.started += 1
                time.sleep(0.01)
            self.stopping.wait(self.random.uniform(0.5, 2.0))
        for process in running:
            process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--row", action="append", help="ONNX_SUBSTRING,VNNLIB_SUBSTRING (repeatable; "
                        "default: five ACAS Xu rows, two tllverifybench rows, one eran row)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run (default 120)")
    parser.add_argument("--load", type=int, default=3, help="busy processes at once in a burst (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.csv.is_file():
        sys.exit(f"error: {args.csv}: file not found")
    rows = select_rows(args.csv, args.row or list(DEFAULT_ROWS))
    warm.start_server()
    alone = [run_logged(args.csv.parent, row, args.timeout, "alone") for row in rows]
    with BurstyLoad(args.load, args.seed) as load:
        loaded = [run_logged(args.csv.parent, row, args.timeout, "loaded") for row in rows]
    print(format_table(["row", "verdict alone", "s alone", "path alone", "verdict loaded", "s loaded",
                        "path loaded", "same", "slowdown"],
                       [table_row(row, a, b) for row, a, b in zip(rows, alone, loaded)]))
    same = sum(a[:2] == b[:2] for a, b in zip(alone, loaded))
    print(f"{same}/{len(rows)} rows took the same path; {load.started} background processes ran "
          f"(bursts of up to {args.load} at once)")


def table_row(row: dict[str, str], alone, loaded) -> list[str]:
    name = f"{Path(row['onnx']).stem.replace('_batch_2000', '')} {Path(row['vnnlib']).stem}"
    same = "yes" if alone[:2] == loaded[:2] else "NO"
    return [name, alone[0], f"{alone[2]:.1f}", alone[1], loaded[0], f"{loaded[2]:.1f}", loaded[1], same,
            f"{loaded[2] / max(alone[2], 1e-9):.2f}"]


if __name__ == "__main__":
    main()
