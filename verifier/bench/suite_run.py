"""`cli.py bench`: load the suite, run it, write the results CSV, print the summary, draw the plot."""
from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Sequence, TextIO

from verifier.bench.instances import Suite, load_suite
from verifier.bench.memory import fair_share, gigabytes
from verifier.bench.report import ResultsWriter, format_summary, read_finished, summarise
from verifier.bench.runner import Outcome, WorkerSettings, effective_timeout, run_suite, worker_threads
from verifier.errors import UserError

DEFAULT_RESULTS = "bench_results.csv"
LEGEND = ("Ours: solved (wrong apart), total and median time of the solved runs, score +10 per correct "
          "and -150 per wrong.\nReference tools: solved, wrong, total/median time of the solved runs; "
          "a run slower than our time limit counts as unsolved.")


def bench(csv_path: str | Path, *, root: str | Path | None = None, timeout_cap: float | None = None,
          out: str | Path = DEFAULT_RESULTS, plot: str | Path | None = None, name_filter: str | None = None,
          jobs: int = 1, command: Sequence[str] | None = None, progress: bool = True,
          stdout: TextIO | None = None, ray: str | None = None, cpus_per_task: int | None = None,
          device: str | None = None, memory_limit: float | None = None, resume: bool = False) -> list[Outcome]:
    """Runs every selected instance of the CSV and reports; returns the outcomes in the CSV's order.
    `command` (a template, see runner) runs another verifier or this one cold; by default each instance
    runs in a warm worker of this verifier. `ray`: run each instance as a Ray task on the cluster at
    this address ("" starts Ray locally) instead of `jobs` local workers. `memory_limit` (GB) caps each
    worker's memory (default: the RAM divided among the instances that run at once). With `resume`,
    the rows already in `out` are kept and not run again. Raises UserError for bad arguments or a
    missing/malformed CSV."""
    stdout = stdout or sys.stdout
    _check_arguments(timeout_cap, jobs, plot, ray, cpus_per_task, memory_limit)
    suite = load_suite(csv_path, root=root, name_filter=name_filter)
    if not suite.instances:
        print(f"warning: no row of {csv_path} matches --filter {name_filter!r}", file=sys.stderr)
    finished = _finished_rows(suite, out, timeout_cap) if resume else {}
    settings = _worker_settings(jobs, command, ray, cpus_per_task, device, memory_limit)
    started = time.monotonic()
    with ResultsWriter(out, append=resume) as writer:
        outcomes = run_suite(suite, timeout_cap=timeout_cap, jobs=jobs, settings=settings, ray_address=ray,
                             finished=finished, progress=progress, on_outcome=writer.write)
    wall = time.monotonic() - started
    print(format_summary(summarise(outcomes, suite.tools), suite.tools), file=stdout)
    print(LEGEND, file=stdout)
    start = "warm workers, torch imported once" if command is None else "a fresh process per instance"
    where = f"Ray tasks at {ray or 'a local Ray'}" if ray is not None else f"jobs={jobs}"
    resumed = f", {len(finished)} kept from an earlier run" if finished else ""
    print(f"total wall time: {wall:.1f} s for {len(outcomes) - len(finished)} instances ({where}, {start}{resumed}); "
          f"results: {out}", file=stdout)
    if plot:
        from verifier.bench.plot import save_cactus

        save_cactus(plot, outcomes, suite.tools, suite.title)
        print(f"cactus plot: {plot}", file=stdout)
    return outcomes


def _worker_settings(jobs: int, command, ray: str | None, cpus_per_task: int | None, device: str | None,
                     memory_limit: float | None) -> WorkerSettings:
    """Threads: --cpus-per-task, else the cores shared among the local jobs (one per Ray task). Memory
    cap: --memory-limit, else the RAM shared among the local jobs (on Ray each task works out its share
    of its own node)."""
    if ray is None:
        threads = cpus_per_task or worker_threads(jobs)
        memory = gigabytes(memory_limit) if memory_limit is not None else fair_share(1 / jobs)
    else:
        threads = cpus_per_task or 1
        memory = gigabytes(memory_limit) if memory_limit is not None else None
    return WorkerSettings(tuple(command) if command is not None else None, threads, memory, device)


def _finished_rows(suite: Suite, out: str | Path, timeout_cap: float | None) -> dict[int, Outcome]:
    """Row index -> outcome for the rows an earlier run wrote to `out`: each recorded row stands for
    the first suite row with the same onnx and vnnlib not yet matched (a suite may repeat a row)."""
    recorded = defaultdict(list)
    for row in read_finished(out):
        recorded[(row["onnx"], row["vnnlib"])].append(row)
    finished = {}
    for index, inst in enumerate(suite.instances):
        rows = recorded.get((inst.onnx, inst.vnnlib))
        if rows:
            row = rows.pop(0)
            finished[index] = Outcome(inst, row["verdict"], float(row["time"]), effective_timeout(inst, timeout_cap),
                                      row["note"] or "")
    return finished


def _check_arguments(timeout_cap: float | None, jobs: int, plot: str | Path | None, ray: str | None,
                     cpus_per_task: int | None, memory_limit: float | None) -> None:
    if timeout_cap is not None and not timeout_cap > 0:
        raise UserError(f"--timeout-cap must be positive, got {timeout_cap}")
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if ray is not None and jobs != 1:
        raise UserError("--jobs sets the local pool's size; with --ray, Ray runs as many tasks at once as "
                        "the cluster has CPUs for (see --cpus-per-task)")
    if cpus_per_task is not None and cpus_per_task < 1:
        raise UserError(f"--cpus-per-task must be at least 1, got {cpus_per_task}")
    if memory_limit is not None and not memory_limit > 0:
        raise UserError(f"--memory-limit must be a positive number of GB, got {memory_limit}")
    if plot and not Path(plot).resolve().parent.is_dir():
        raise UserError(f"--plot {plot}: no such folder")
