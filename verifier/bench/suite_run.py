"""`cli.py bench`: load the suite, run it, write the results CSV, print the summary, draw the plot."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence, TextIO

from verifier.bench.instances import load_suite
from verifier.bench.report import ResultsWriter, format_summary, summarise
from verifier.bench.runner import Outcome, run_suite
from verifier.errors import UserError

DEFAULT_RESULTS = "bench_results.csv"
LEGEND = ("Ours: solved (wrong apart), total and median time of the solved runs, score +10 per correct "
          "and -150 per wrong.\nReference tools: solved, wrong, total/median time of the solved runs; "
          "a run slower than our time limit counts as unsolved.")


def bench(csv_path: str | Path, *, root: str | Path | None = None, timeout_cap: float | None = None,
          out: str | Path = DEFAULT_RESULTS, plot: str | Path | None = None, name_filter: str | None = None,
          jobs: int = 1, command: Sequence[str] | None = None, progress: bool = True,
          stdout: TextIO | None = None) -> list[Outcome]:
    """Runs every selected instance of the CSV and reports; returns the outcomes in the CSV's order.
    `command` (a template, see runner) runs another verifier or this one cold; by default each instance
    runs in a warm worker of this verifier. Raises UserError for bad arguments or a missing/malformed CSV."""
    stdout = stdout or sys.stdout
    _check_arguments(timeout_cap, jobs, plot)
    suite = load_suite(csv_path, root=root, name_filter=name_filter)
    if not suite.instances:
        print(f"warning: no row of {csv_path} matches --filter {name_filter!r}", file=sys.stderr)
    started = time.monotonic()
    with ResultsWriter(out) as writer:
        outcomes = run_suite(suite, timeout_cap=timeout_cap, jobs=jobs, command=command,
                             progress=progress, on_outcome=writer.write)
    wall = time.monotonic() - started
    print(format_summary(summarise(outcomes, suite.tools), suite.tools), file=stdout)
    print(LEGEND, file=stdout)
    start = "warm workers, torch imported once" if command is None else "a fresh process per instance"
    print(f"total wall time: {wall:.1f} s for {len(outcomes)} instances (jobs={jobs}, {start}); results: {out}",
          file=stdout)
    if plot:
        from verifier.bench.plot import save_cactus

        save_cactus(plot, outcomes, suite.tools, suite.title)
        print(f"cactus plot: {plot}", file=stdout)
    return outcomes


def _check_arguments(timeout_cap: float | None, jobs: int, plot: str | Path | None) -> None:
    if timeout_cap is not None and not timeout_cap > 0:
        raise UserError(f"--timeout-cap must be positive, got {timeout_cap}")
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if plot and not Path(plot).resolve().parent.is_dir():
        raise UserError(f"--plot {plot}: no such folder")
