"""`cli.py soundness check`: run a verifier on every instance of a soundness set and judge
each run (classify.py): a fresh process per instance through an adapter (adapters.py; killed
at timeout + KILL_GRACE, after its untimed prepare step if it has one), or, for tests only,
`verifier.api.verify` in this process (`runner=API`) so that monkeypatched mutants take
effect. Prints a table, writes a CSV; `failed` says whether anything was UNSOUND,
BAD-WITNESS or CONFLICT."""
from __future__ import annotations

import csv
import shlex
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from verifier.errors import UserError
from verifier.processes import kill_group
from verifier.soundness import files
from verifier.soundness.adapters import OURS, PREPARE_TIMEOUT, Adapter, from_command
from verifier.soundness.classify import CLASSES, FAILING, Verdict, classify
from verifier.soundness.replay import onnx_model
from verifier.soundness.results import ResultFile, parse_result
from verifier.soundness.vnnlib_io import SpecError, read_spec

KILL_GRACE = 5.0
SUBPROCESS, API = "subprocess", "api"
CSV_COLUMNS = ("onnx", "vnnlib", "kind", "arch", "act", "expected", "verdict", "status", "note", "seconds")


@dataclass
class Run:
    row: files.Row
    result: ResultFile
    verdict: Verdict
    seconds: float


@dataclass
class CheckReport:
    runs: list[Run] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(run.verdict.status == status for run in self.runs)

    @property
    def failed(self) -> bool:
        return any(run.verdict.status in FAILING for run in self.runs)


def _print(line: str) -> None:
    print(line, flush=True)


def check(directory: str | Path, command: str | Adapter = OURS, timeout: float | None = None,
          runner: str = SUBPROCESS, name_filter: str | None = None, select=None,
          stop_at_failure: bool = False, log=_print) -> CheckReport:
    """Runs every instance (those whose vnnlib path contains name_filter and, from Python, for
    whose files.Row `select` is true) and judges it; with stop_at_failure, stops after the
    first UNSOUND, BAD-WITNESS or CONFLICT. timeout, when given, replaces the instances' own.
    command: an adapter, or a command template (--command)."""
    directory = Path(directory)
    adapter = from_command(command) if isinstance(command, str) else command
    rows = [r for r in _load_rows(directory, name_filter) if select is None or select(r)]
    report = CheckReport()
    for row in rows:
        seconds_allowed = row.timeout if timeout is None else timeout
        onnx, vnnlib = (directory / row.onnx).resolve(), (directory / row.vnnlib).resolve()
        result, seconds = _run_one(runner, adapter, onnx, vnnlib, seconds_allowed)
        verdict = classify(row.expected, result, _spec(vnnlib), onnx_model(str(onnx)))
        report.runs.append(Run(row, result, verdict, seconds))
        log(f"{verdict.status:<11} {result.verdict:<8} {seconds:6.1f} s  {row.vnnlib}"
            + (f"  ({verdict.note})" if verdict.note and verdict.status != "CORRECT" else ""))
        if stop_at_failure and verdict.status in FAILING:
            break
    return report


def _spec(path: Path):
    try:
        return read_spec(path)
    except SpecError as e:
        raise UserError(f"{path}: {e}") from None


def _load_rows(directory: Path, name_filter: str | None) -> list[files.Row]:
    path = directory / "instances.csv"
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        rows = files.read_instances(path)
    except (ValueError, KeyError) as e:
        raise UserError(f"{path}: {e}") from None
    rows = [r for r in rows if not name_filter or name_filter in r.vnnlib]
    for r in rows:
        if r.expected not in ("sat", "unsat"):
            raise UserError(f"{path}: {r.vnnlib}: expected must be sat or unsat, not {r.expected!r}")
        for rel in (r.onnx, r.vnnlib):
            if not (directory / rel).is_file():
                raise UserError(f"{directory / rel}: file not found")
    return rows


def _run_one(runner: str, adapter: Adapter, onnx: Path, vnnlib: Path, timeout: float) -> tuple[ResultFile, float]:
    """The result file (read whole) and the seconds of the timed run."""
    with tempfile.TemporaryDirectory(prefix="soundness-") as folder:
        result_path = Path(folder) / "result.txt"
        values = {"onnx": str(onnx), "vnnlib": str(vnnlib), "timeout": f"{timeout:g}", "result": str(result_path)}
        if runner == SUBPROCESS and adapter.prepare and not _prepare(adapter.prepare, values):
            return parse_result("error\n; prepare_instance failed"), 0.0
        started = time.monotonic()
        if runner == API:
            _run_api(onnx, vnnlib, timeout, result_path)
            killed = False
        elif runner == SUBPROCESS:
            killed = _run_subprocess(_argv(adapter.command, values), timeout + KILL_GRACE) is None
        else:
            raise ValueError(f"unknown runner '{runner}'")
        seconds = time.monotonic() - started
        text = result_path.read_text(errors="replace") if result_path.is_file() else ""
    if not text.strip():
        text = "timeout\n" if killed else "error\n"
    return parse_result(text), seconds


def _prepare(template: str, values: dict) -> bool:
    """The adapter's prepare step (VNN-COMP's prepare_instance.sh): exit status 0 in time."""
    return _run_subprocess(_argv(template, values), PREPARE_TIMEOUT) == 0


def _run_api(onnx: Path, vnnlib: Path, timeout: float, result_path: Path) -> None:
    """In this process, so that monkeypatches apply; an exception counts as `error`."""
    from verifier import api

    try:
        text = api.verify(str(onnx), str(vnnlib), timeout=timeout).result_file_text()
    except Exception as e:  # a mutant may well crash the verifier
        text = f"error\n; {type(e).__name__}: {e}\n"
    result_path.write_text(text)


def _argv(template: str, values: dict) -> list[str]:
    try:
        return [part.format(**values) for part in shlex.split(template)]
    except (KeyError, IndexError, ValueError) as e:
        raise UserError(f"--command: bad template ({e}); use {{onnx}} {{vnnlib}} {{timeout}} {{result}}") from None


def _run_subprocess(argv: list[str], seconds: float) -> int | None:
    """Runs argv in a new session; kills its whole group after `seconds`. Returns the exit
    status, None when it ran out of time (a result file written before the kill still counts)."""
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        raise UserError(f"--command: cannot run {argv[0]!r} ({e.strerror})") from None
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None
    finally:  # out of time or interrupted: the whole group, so that no grandchild outlives it
        if process.poll() is None:
            kill_group(process.pid)
            process.wait()


# ---------------------------------------------------------------- reporting

def format_table(report: CheckReport) -> str:
    """Counts of each class per (kind, arch, act), then the totals."""
    groups: dict[tuple, Counter] = {}
    for run in report.runs:
        groups.setdefault((run.row.kind, run.row.arch, run.row.act), Counter())[run.verdict.status] += 1
    header = ["kind", "arch", "act", *CLASSES, "total"]
    lines = [header]
    for key in sorted(groups):
        counts = groups[key]
        lines.append([*key, *(str(counts[c]) for c in CLASSES), str(sum(counts.values()))])
    totals = Counter(run.verdict.status for run in report.runs)
    lines.append(["all", "", "", *(str(totals[c]) for c in CLASSES), str(len(report.runs))])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def write_csv(report: CheckReport, path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for run in report.runs:
            row = run.row
            writer.writerow([row.onnx, row.vnnlib, row.kind, row.arch, row.act, row.expected,
                             run.result.verdict, run.verdict.status, run.verdict.note, f"{run.seconds:.2f}"])
