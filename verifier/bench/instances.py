"""Reading a benchmark suite: an instances.csv (VNN-COMP style, with or without a header) and the
reference results that come with it (`X_result`/`X_time` columns, `best_time`, and a
`peers_cpu_results.csv` next to the CSV)."""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from verifier.errors import UserError

HEADERLESS_COLUMNS = ("onnx", "vnnlib", "timeout")
REQUIRED_COLUMNS = HEADERLESS_COLUMNS
PEERS_FILE = "peers_cpu_results.csv"
PEERS_COLUMNS = ("peer", "onnx", "vnnlib", "result", "wall_s")
BEST_TIME_COLUMN = "best_time"
BEST_TIME_TOOL = "best (VNN-COMP)"
PEER_SUFFIX = " (cpu)"
GROUND_TRUTHS = ("sat", "unsat")
# a first path component that names a file kind rather than a benchmark
_NOT_A_BENCHMARK = {"", ".", "..", "onnx", "vnnlib", "nets", "specs", "networks", "properties"}


@dataclass(frozen=True)
class ReferenceRun:
    """What a reference tool reported for one instance. `time` is None where it is not known."""

    result: str
    time: float | None


@dataclass(frozen=True)
class Instance:
    benchmark: str
    onnx: str  # as written in the CSV, relative to the suite's root
    vnnlib: str
    timeout: float
    expected: str = ""  # "sat", "unsat" or "" (no ground truth)
    references: dict[str, ReferenceRun] = field(default_factory=dict)  # tool -> run; absent = not run

    @property
    def key(self) -> str:
        return f"{self.onnx}|{self.vnnlib}"


@dataclass(frozen=True)
class Suite:
    csv_path: Path
    root: Path
    instances: list[Instance]
    tools: list[str]  # reference tools, in the order of their columns, then the peers

    @property
    def title(self) -> str:
        return f"{self.csv_path.resolve().parent.name}/{self.csv_path.name}"

    def path(self, relative: str) -> Path:
        return self.root / relative


def load_suite(csv_path: str | os.PathLike, root: str | os.PathLike | None = None,
               name_filter: str | None = None) -> Suite:
    """Reads the CSV (and the peers file beside it), keeps the rows matching `name_filter` (a substring
    of the benchmark, onnx or vnnlib) and checks that their files exist. Raises UserError when the CSV is
    missing or malformed."""
    csv_path = Path(csv_path)
    root = Path(root) if root is not None else csv_path.parent
    columns, records = _split_header(_read_csv(csv_path), csv_path, REQUIRED_COLUMNS, HEADERLESS_COLUMNS)
    column_tools = _reference_tools(columns)
    instances = [_make_instance(line, record, column_tools, csv_path) for line, record in records]
    peer_tools: list[str] = []
    peers_path = csv_path.parent / PEERS_FILE
    if peers_path.is_file():
        peer_tools, peer_runs = _read_peers(peers_path)
        instances = [_with_peers(inst, peer_runs) for inst in instances]
    if name_filter:
        instances = [inst for inst in instances if _matches(inst, name_filter)]
    _check_files_exist(instances, root, csv_path)
    return Suite(csv_path=csv_path, root=root, instances=instances, tools=[*column_tools, *peer_tools])


# ---------------------------------------------------------------- the CSV itself

def _read_csv(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank rows with their 1-based line numbers, cells stripped."""
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            rows = []
            for row in reader:
                cells = [cell.strip() for cell in row]
                if any(cells):
                    rows.append((reader.line_num, cells))
            return rows
    except (csv.Error, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable CSV file ({e})") from None


def _split_header(rows, path: Path, required: tuple[str, ...], headerless: tuple[str, ...] | None = None):
    """The column names and the records (line, dict). A first row naming `onnx` and `vnnlib` is a header;
    without one, the columns are `headerless` (VNN-COMP's instances.csv: onnx,vnnlib,timeout)."""
    if not rows:
        raise UserError(f"{path}: no instances")
    first = [cell.lower() for cell in rows[0][1]]
    if "onnx" in first and "vnnlib" in first:
        columns, body = first, rows[1:]
        missing = [name for name in required if name not in columns]
        if missing:
            raise UserError(f"{path}:{rows[0][0]}: header lacks column(s) {', '.join(missing)}")
    elif headerless:
        columns, body = list(headerless), rows
    else:
        raise UserError(f"{path}:{rows[0][0]}: no header (expected {','.join(required)})")
    if not body:
        raise UserError(f"{path}: no instances")
    records = []
    for line, cells in body:
        if any(cells[len(columns):]):
            raise UserError(f"{path}:{line}: {len(cells)} cells, but only {len(columns)} columns "
                            f"({','.join(columns)})")
        cells = cells[:len(columns)] + [""] * (len(columns) - len(cells))
        records.append((line, dict(zip(columns, cells))))
    return columns, records


def _reference_tools(columns: list[str]) -> dict[str, tuple[str | None, str]]:
    """Reference tool name -> its (result, time) columns; `best_time` has no result column."""
    tools: dict[str, tuple[str | None, str]] = {}
    for name in columns:
        if name.endswith("_result") and f"{name[:-len('_result')]}_time" in columns:
            tool = name[:-len("_result")]
            tools[tool] = (name, f"{tool}_time")
    if BEST_TIME_COLUMN in columns:
        tools[BEST_TIME_TOOL] = (None, BEST_TIME_COLUMN)
    return tools


def _make_instance(line: int, record: dict[str, str], tools, path: Path) -> Instance:
    where = f"{path}:{line}"
    if not record["onnx"] or not record["vnnlib"]:
        raise UserError(f"{where}: empty onnx or vnnlib path")
    expected = _normalise_verdict(record.get("expected", ""))
    references = {}
    for tool, (result_column, time_column) in tools.items():
        run = _reference_run(record, result_column, time_column, expected, where)
        if run is not None:
            references[tool] = run
    return Instance(
        benchmark=record.get("benchmark") or _benchmark_from_path(record["onnx"], path),
        onnx=record["onnx"],
        vnnlib=record["vnnlib"],
        timeout=_parse_seconds(record["timeout"], "timeout", where, positive=True),
        expected=expected if expected in GROUND_TRUTHS else "",
        references=references,
    )


def _reference_run(record, result_column, time_column, expected, where) -> ReferenceRun | None:
    seconds = _parse_seconds(record.get(time_column, ""), time_column, where, optional=True)
    if result_column is None:  # best_time: the fastest tool of the competition, no verdict of its own
        solved = seconds is not None and expected in GROUND_TRUTHS
        return ReferenceRun(expected if solved else "unknown", seconds)
    result = _normalise_verdict(record.get(result_column, ""))
    if not result and seconds is None:
        return None  # this tool did not run the instance
    return ReferenceRun(result or "unknown", seconds)


def _benchmark_from_path(onnx: str, csv_path: Path) -> str:
    parts = Path(onnx).parts
    if len(parts) > 1 and parts[0].lower() not in _NOT_A_BENCHMARK:
        return parts[0]
    return csv_path.resolve().parent.name


def _parse_seconds(text: str, column: str, where: str, optional: bool = False, positive: bool = False):
    if not text:
        if optional:
            return None
        raise UserError(f"{where}: {column} is empty")
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{where}: {column} is not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise UserError(f"{where}: {column} must be a {'positive' if positive else 'non-negative'} number")
    return value


def _normalise_verdict(text: str) -> str:
    return text.strip().lower()


# ---------------------------------------------------------------- peers_cpu_results.csv

def _read_peers(path: Path) -> tuple[list[str], dict[str, dict[str, ReferenceRun]]]:
    """Peer tool names (in order of appearance) and instance key -> {tool: run}."""
    _, records = _split_header(_read_csv(path), path, PEERS_COLUMNS)
    tools: dict[str, None] = {}
    runs: dict[str, dict[str, ReferenceRun]] = {}
    for line, record in records:
        tool = record["peer"] + PEER_SUFFIX
        tools[tool] = None
        seconds = _parse_seconds(record["wall_s"], "wall_s", f"{path}:{line}", optional=True)
        key = f"{_normalise_path(record['onnx'])}|{_normalise_path(record['vnnlib'])}"
        result = _normalise_verdict(record["result"]) or "unknown"
        runs.setdefault(key, {})[tool] = ReferenceRun(result, seconds)
    return list(tools), runs


def _with_peers(instance: Instance, peer_runs: dict[str, dict[str, ReferenceRun]]) -> Instance:
    key = f"{_normalise_path(instance.onnx)}|{_normalise_path(instance.vnnlib)}"
    runs = peer_runs.get(key)
    if not runs:
        return instance
    return Instance(instance.benchmark, instance.onnx, instance.vnnlib, instance.timeout, instance.expected,
                    {**instance.references, **runs})


def _normalise_path(text: str) -> str:
    return os.path.normpath(text)


# ---------------------------------------------------------------- selection and checks

def _matches(instance: Instance, substring: str) -> bool:
    return any(substring in text for text in (instance.benchmark, instance.onnx, instance.vnnlib))


def _check_files_exist(instances: list[Instance], root: Path, csv_path: Path) -> None:
    for inst in instances:
        for relative in (inst.onnx, inst.vnnlib):
            if not (root / relative).is_file():
                raise UserError(f"{csv_path}: {root / relative}: file not found (wrong --root?)")
