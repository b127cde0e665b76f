"""Running the verifier on each instance in a fresh worker process, with a hard deadline."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import verifier
from verifier.bench.instances import Instance, Suite
from verifier.bench.scoring import ERROR, TIMEOUT, VERDICTS, WRONG, classify, is_solved

CLI_PATH = Path(verifier.__file__).resolve().parents[1] / "cli.py"
# Each part is formatted with onnx, vnnlib (absolute paths), timeout (seconds) and out (the result file).
DEFAULT_COMMAND = (sys.executable, str(CLI_PATH), "verify", "{onnx}", "{vnnlib}",
                   "--timeout", "{timeout}", "--out", "{out}")
KILL_AFTER_SECONDS = 5.0  # a worker still running this long after its timeout is killed


@dataclass(frozen=True)
class Outcome:
    instance: Instance
    verdict: str
    time: float  # wall seconds around the worker process, start-up included
    timeout: float  # the limit it ran under

    @property
    def status(self) -> str:
        return classify(self.verdict, self.instance.expected)


def effective_timeout(instance: Instance, timeout_cap: float | None) -> float:
    return instance.timeout if timeout_cap is None else min(instance.timeout, timeout_cap)


def run_suite(suite: Suite, *, timeout_cap: float | None = None, jobs: int = 1,
              command: Sequence[str] = DEFAULT_COMMAND, progress: bool = True,
              on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Runs every instance (`jobs` at a time) behind a progress bar on stderr; calls `on_outcome` as each
    finishes. Returns the outcomes in the suite's order."""
    from tqdm import tqdm

    outcomes: dict[int, Outcome] = {}  # by row index
    solved = wrong = 0
    with tqdm(total=len(suite.instances), desc=suite.title, unit="inst", file=sys.stderr,
              dynamic_ncols=True, disable=not progress) as bar:
        for index, outcome in _run_all(suite, timeout_cap, jobs, command):
            outcomes[index] = outcome
            if on_outcome is not None:
                on_outcome(outcome)
            solved += is_solved(outcome.status)
            wrong += outcome.status == WRONG
            bar.set_postfix(solved=solved, wrong=wrong, refresh=False)
            bar.update()
    return [outcomes[index] for index in sorted(outcomes)]


def _run_all(suite: Suite, timeout_cap, jobs: int, command) -> Iterator[tuple[int, Outcome]]:
    """(row index, outcome) in the order they finish. On an interruption the running workers are killed."""
    def run(index: int, workers: WorkerGroup | None = None) -> tuple[int, Outcome]:
        inst = suite.instances[index]
        return index, run_instance(inst, suite.path(inst.onnx), suite.path(inst.vnnlib),
                                   effective_timeout(inst, timeout_cap), command, workers)

    if jobs <= 1:
        for index in range(len(suite.instances)):
            yield run(index)
        return
    workers = WorkerGroup()
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = [pool.submit(run, index, workers) for index in range(len(suite.instances))]
        for future in as_completed(futures):
            yield future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        workers.kill_all()
        pool.shutdown(wait=True)


def run_instance(instance: Instance, onnx: Path, vnnlib: Path, timeout: float,
                 command: Sequence[str] = DEFAULT_COMMAND, workers: WorkerGroup | None = None) -> Outcome:
    """One worker process; killed (with its whole process group) at timeout + KILL_AFTER_SECONDS,
    which counts as a timeout."""
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        out = Path(folder) / "result.txt"
        argv = [part.format(onnx=onnx.resolve(), vnnlib=vnnlib.resolve(), timeout=f"{timeout:.10g}", out=out)
                for part in command]
        started = time.monotonic()
        stdout, killed = _run_with_deadline(argv, timeout + KILL_AFTER_SECONDS, workers)
        elapsed = time.monotonic() - started
        verdict = TIMEOUT if killed else read_verdict(out, stdout)
    return Outcome(instance, verdict, elapsed, timeout)


def read_verdict(result_file: Path, stdout: str) -> str:
    """The first line of the result file, else of stdout, as an exact token; anything else is `error`."""
    for text in (_read_text(result_file), stdout):
        token = _first_line(text)
        if token:
            return token if token in VERDICTS else ERROR
    return ERROR


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip().lower() if lines else ""


# ---------------------------------------------------------------- worker processes

class WorkerGroup:
    """The worker processes of one suite run, so that an interrupted run can kill those still running
    (and those about to start)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._processes: set[subprocess.Popen] = set()
        self._closed = False

    def add(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.add(process)
            if self._closed:
                _kill_group(process)

    def remove(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.discard(process)

    def kill_all(self) -> None:
        with self._lock:
            self._closed = True
            for process in self._processes:
                _kill_group(process)


def _run_with_deadline(argv: list[str], deadline: float, workers: WorkerGroup | None) -> tuple[str, bool]:
    """Runs argv in a new process group; returns (stdout, whether it was killed at the deadline)."""
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, errors="replace",
                               start_new_session=True)
    if workers is not None:
        workers.add(process)
    try:
        stdout, _ = process.communicate(timeout=deadline)
        return stdout, False
    except BaseException as e:  # the deadline, or an interruption: leave nothing behind
        _kill_group(process)
        process.wait()
        process.stdout.close()
        if isinstance(e, subprocess.TimeoutExpired):
            return "", True
        raise
    finally:
        if workers is not None:
            workers.remove(process)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
