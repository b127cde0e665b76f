"""Running the verifier on each instance in a fresh worker process, with a hard deadline."""
from __future__ import annotations

import os
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
from verifier.processes import kill_group

CLI_PATH = Path(verifier.__file__).resolve().parents[1] / "cli.py"
# Each part is formatted with onnx, vnnlib (absolute paths), timeout (seconds) and out (the result file).
WARM_ARGUMENTS = ("{onnx}", "{vnnlib}", "--timeout", "{timeout}", "--out", "{out}")
# This verifier started cold, as VNN-COMP times tools: start-up (torch's import, ~2 s) included.
COLD_COMMAND = (sys.executable, str(CLI_PATH), "verify", *WARM_ARGUMENTS)
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
              command: Sequence[str] | None = None, progress: bool = True,
              on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Runs every instance (`jobs` at a time) behind a progress bar on stderr; calls `on_outcome` as each
    finishes. Returns the outcomes in the suite's order."""
    from tqdm import tqdm

    if command is None:
        from verifier.bench import warm

        warm.start_server()
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
    threads = worker_threads(jobs)

    def run(index: int, workers: WorkerGroup | None = None) -> tuple[int, Outcome]:
        inst = suite.instances[index]
        return index, run_instance(inst, suite.path(inst.onnx), suite.path(inst.vnnlib),
                                   effective_timeout(inst, timeout_cap), command, workers, threads)

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


def worker_threads(jobs: int) -> int | None:
    """CPU threads per worker when `jobs` run at once (None: the default, every core). Workers that
    each use every core slow each other down sixfold (ACAS Xu 3_3 prop_2, two at once on two
    cores: over 150 s each; 27 s each on one thread each)."""
    return None if jobs <= 1 else max(1, (os.cpu_count() or 1) // jobs)


def run_instance(instance: Instance, onnx: Path, vnnlib: Path, timeout: float,
                 command: Sequence[str] | None = None, workers: WorkerGroup | None = None,
                 threads: int | None = None) -> Outcome:
    """One worker process: a warm worker of this verifier (command None) or the command, with
    `threads` CPU threads if given; killed (with its whole process group) at timeout +
    KILL_AFTER_SECONDS, which counts as a timeout."""
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        out = Path(folder) / "result.txt"
        values = dict(onnx=onnx.resolve(), vnnlib=vnnlib.resolve(), timeout=f"{timeout:.10g}", out=out)
        argv = [part.format(**values) for part in (WARM_ARGUMENTS if command is None else command)]
        worker = _WarmWorker if command is None else _CommandWorker
        started = time.monotonic()
        stdout, killed = _run_with_deadline(lambda: worker(argv, threads), timeout + KILL_AFTER_SECONDS, workers)
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

class _CommandWorker:
    """A command run in its own session, stdout captured."""

    def __init__(self, argv: list[str], threads: int | None = None):
        env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, errors="replace",
                                        start_new_session=True, env=env)
        self.pid = self.process.pid

    def finish(self, seconds: float) -> str:
        """Its stdout once it ends; subprocess.TimeoutExpired if it runs longer than `seconds`."""
        stdout, _ = self.process.communicate(timeout=seconds)
        return stdout

    def reap(self) -> None:
        self.process.wait()
        self.process.stdout.close()


class _WarmWorker:
    """`cli.py verify` forked from the warm server (see warm.py); its verdict comes back in --out only."""

    def __init__(self, cli_args: list[str], threads: int | None = None):
        from verifier.bench import warm

        self.process = warm.context().Process(target=warm.verify_in_worker, args=(cli_args, threads))
        self.process.start()
        self.pid = self.process.pid

    def finish(self, seconds: float) -> str:
        self.process.join(seconds)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired("warm worker", seconds)
        return ""

    def reap(self) -> None:
        self.process.join()


class WorkerGroup:
    """The worker processes of one suite run, so that an interrupted run can kill those still running
    (and those about to start)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pids: set[int] = set()
        self._closed = False

    def add(self, pid: int) -> None:
        with self._lock:
            self._pids.add(pid)
            if self._closed:
                kill_group(pid)

    def remove(self, pid: int) -> None:
        with self._lock:
            self._pids.discard(pid)

    def kill_all(self) -> None:
        with self._lock:
            self._closed = True
            for pid in self._pids:
                kill_group(pid)


def _run_with_deadline(start: Callable[[], _CommandWorker | _WarmWorker], deadline: float,
                       workers: WorkerGroup | None) -> tuple[str, bool]:
    """Starts a worker; returns (its stdout, whether it was killed at the deadline)."""
    worker = start()
    if workers is not None:
        workers.add(worker.pid)
    try:
        return worker.finish(deadline), False
    except BaseException as e:  # the deadline, or an interruption: leave nothing behind
        kill_group(worker.pid)
        worker.reap()
        if isinstance(e, subprocess.TimeoutExpired):
            return "", True
        raise
    finally:
        if workers is not None:
            workers.remove(worker.pid)
