"""The results CSV, and the per-benchmark summary of ours beside the reference tools."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from verifier.bench.runner import Outcome
from verifier.bench.scoring import TIMEOUT, Tally, classify
from verifier.errors import UserError

RESULT_COLUMNS = ("instance", "benchmark", "onnx", "vnnlib", "expected", "verdict", "time", "status", "note")
TOTAL = "TOTAL"


# ---------------------------------------------------------------- results CSV

class ResultsWriter:
    """Writes one row per outcome as it comes, flushed to the disk at once, so that a run killed at
    any moment (even by SIGKILL) keeps every row it finished. With `append`, rows go after those of
    an earlier run of the same file (see read_finished)."""

    def __init__(self, path: str | Path, append: bool = False):
        self.path = Path(path)
        self.append = append and self.path.is_file() and self.path.stat().st_size > 0

    def __enter__(self) -> "ResultsWriter":
        try:
            self._file = open(self.path, "a" if self.append else "w", newline="")
        except OSError as e:
            raise UserError(f"{self.path}: cannot write the results ({e.strerror})") from None
        self._writer = csv.writer(self._file)
        if not self.append:
            self._writer.writerow(RESULT_COLUMNS)
            self._sync()
        return self

    def write(self, outcome: Outcome) -> None:
        self._writer.writerow(result_row(outcome))
        self._sync()

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def __exit__(self, *exc) -> None:
        self._file.close()


def result_row(outcome: Outcome) -> list[str]:
    inst = outcome.instance
    return [inst.key, inst.benchmark, inst.onnx, inst.vnnlib, inst.expected, outcome.verdict,
            f"{outcome.time:.3f}", outcome.status, outcome.note]


def read_finished(path: str | Path) -> list[dict[str, str]]:
    """The rows of an earlier results CSV, for --resume ([] where there is none yet). A last line
    cut short (a run killed while writing it) is dropped from the file. Raises UserError for a file
    that is not a results CSV."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return []
    text = path.read_text(errors="replace")
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
        path.write_text(text)
        if not text:
            return []
    reader = csv.DictReader(text.splitlines())
    if tuple(reader.fieldnames or ()) != RESULT_COLUMNS:
        raise UserError(f"{path}: --resume needs a results CSV of this bench (columns {','.join(RESULT_COLUMNS)})")
    rows = list(reader)
    for line, row in enumerate(rows, start=2):
        try:
            float(row["time"])
        except (TypeError, ValueError):
            raise UserError(f"{path}:{line}: time is not a number: {row['time']!r}") from None
    return rows


# ---------------------------------------------------------------- summary

@dataclass
class BenchmarkSummary:
    name: str
    ours: Tally = field(default_factory=Tally)
    references: dict[str, Tally] = field(default_factory=dict)  # tool -> its runs (rows = runs made)


def summarise(outcomes: list[Outcome], tools: list[str]) -> list[BenchmarkSummary]:
    """One summary per benchmark (in order of first appearance), then the TOTAL."""
    def empty(name: str) -> BenchmarkSummary:
        return BenchmarkSummary(name, references={tool: Tally() for tool in tools})

    by_name: dict[str, BenchmarkSummary] = {}
    total = empty(TOTAL)
    for outcome in outcomes:
        name = outcome.instance.benchmark
        summary = by_name.setdefault(name, empty(name))
        for target in (summary, total):
            _add_outcome(target, outcome)
    return [*by_name.values(), total]


def reference_status(outcome: Outcome, tool: str) -> str | None:
    """The reference tool's status on this instance, judged under the same time limit as ours (a run
    slower than it counts as a timeout); None where the tool did not run the instance."""
    run = outcome.instance.references.get(tool)
    if run is None:
        return None
    verdict = TIMEOUT if run.time is not None and run.time > outcome.timeout else run.result
    return classify(verdict, outcome.instance.expected)


def _add_outcome(summary: BenchmarkSummary, outcome: Outcome) -> None:
    summary.ours.add(outcome.status, outcome.time)
    for tool, tally in summary.references.items():
        status = reference_status(outcome, tool)
        if status is not None:
            tally.add(status, outcome.instance.references[tool].time)


def format_summary(summaries: list[BenchmarkSummary], tools: list[str]) -> str:
    """A Markdown table: our figures, then one column per reference tool."""
    header = ["benchmark", "rows", "solved", "wrong", "unsolved", "time (s)", "median (s)", "score",
              *tools]
    rows = [[s.name, str(s.ours.rows), str(s.ours.solved), str(s.ours.wrong), str(s.ours.unsolved),
             f"{s.ours.total_time:.1f}", _seconds(s.ours.median_time), str(s.ours.score),
             *(_reference_cell(s.references[tool]) for tool in tools)]
            for s in summaries]
    return format_table(header, rows)


def _reference_cell(tally: Tally) -> str:
    """`solved, wrong, total/median s` of a reference tool, or `not run`."""
    if tally.rows == 0:
        return "not run"
    return f"{tally.solved}, {tally.wrong} wrong, {tally.total_time:.1f}/{_seconds(tally.median_time)} s"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[k]) for row in [header, *rows]) for k in range(len(header))]

    def line(cells):
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(row) for row in rows)])
