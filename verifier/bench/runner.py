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
from typing import Callable, Iterator

import verifier
from verifier.bench.instances import Instance, Suite
from verifier.bench.memory import OUT_OF_MEMORY, POLL_SECONDS, MemoryWatch
from verifier.bench.scoring import ERROR, TIMEOUT, VERDICTS, WRONG, classify, is_solved
from verifier.processes import kill_group

CLI_PATH = Path(verifier.__file__).resolve().parents[1] / "cli.py"
# Each part is formatted with onnx, vnnlib (absolute paths), timeout (seconds) and out (the result file).
WARM_ARGUMENTS = ("{onnx}", "{vnnlib}", "--timeout", "{timeout}", "--out", "{out}")
# This verifier started cold, as VNN-COMP times tools: start-up (torch's import, ~2 s) included.
COLD_COMMAND = (sys.executable, str(CLI_PATH), "verify", *WARM_ARGUMENTS)
KILL_AFTER_SECONDS = 5.0  # a worker still running this long after its timeout is killed


@dataclass(frozen=True)
class WorkerSettings:
    """How each instance's worker runs."""

    command: tuple[str, ...] | None = None  # a template (see WARM_ARGUMENTS); None: a warm worker of ours
    threads: int | None = None  # CPU threads (OMP_NUM_THREADS, torch threads); None: every core
    memory_limit: int | None = None  # bytes of resident memory; None: no cap
    device: str | None = None  # --device of our warm workers; None: the verifier's default


def cold_command(device: str | None = None) -> tuple[str, ...]:
    """COLD_COMMAND, with --device where one is given."""
    return COLD_COMMAND + device_arguments(device)


def device_arguments(device: str | None) -> tuple[str, ...]:
    return () if device is None else ("--device", device)


@dataclass(frozen=True)
class Outcome:
    instance: Instance
    verdict: str
    time: float  # wall seconds around the worker process, start-up included
    timeout: float  # the limit it ran under
    note: str = ""  # why a run ended in error where the runner knows (out of memory, killed, ...)

    @property
    def status(self) -> str:
        return classify(self.verdict, self.instance.expected)


def effective_timeout(instance: Instance, timeout_cap: float | None) -> float:
    return instance.timeout if timeout_cap is None else min(instance.timeout, timeout_cap)


def run_suite(suite: Suite, *, timeout_cap: float | None = None, jobs: int = 1,
              settings: WorkerSettings = WorkerSettings(), ray_address: str | None = None,
              finished: dict[int, Outcome] | None = None, progress: bool = True,
              on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Runs every instance not in `finished` (row index -> outcome of an earlier run), `jobs` at a
    time in local worker processes or, with `ray_address` ("" for a local Ray), as Ray tasks, behind
    a progress bar on stderr; calls `on_outcome` as each finishes. Returns the outcomes of every
    row, in the suite's order."""
    from tqdm import tqdm

    outcomes: dict[int, Outcome] = dict(finished or {})  # by row index
    remaining = [index for index in range(len(suite.instances)) if index not in outcomes]
    solved = sum(is_solved(o.status) for o in outcomes.values())
    wrong = sum(o.status == WRONG for o in outcomes.values())
    if ray_address is None:
        if settings.command is None and remaining:
            from verifier.bench import warm

            warm.start_server()
        results = _run_all(suite, remaining, timeout_cap, jobs, settings)
    else:
        from verifier.bench import ray_backend

        results = ray_backend.run_all(suite, remaining, timeout_cap, settings, ray_address)
    with tqdm(total=len(suite.instances), initial=len(outcomes), desc=suite.title, unit="inst",
              file=sys.stderr, dynamic_ncols=True, disable=not progress) as bar:
        bar.set_postfix(solved=solved, wrong=wrong, refresh=False)
        for index, outcome in results:
            outcomes[index] = outcome
            if on_outcome is not None:
                on_outcome(outcome)
            if outcome.note:
                bar.write(f"{outcome.instance.key}: {outcome.verdict}: {outcome.note}", file=sys.stderr)
            solved += is_solved(outcome.status)
            wrong += outcome.status == WRONG
            bar.set_postfix(solved=solved, wrong=wrong, refresh=False)
            bar.update()
    return [outcomes[index] for index in sorted(outcomes)]


def _run_all(suite: Suite, indices: list[int], timeout_cap, jobs: int,
             settings: WorkerSettings) -> Iterator[tuple[int, Outcome]]:
    """(row index, outcome) in the order they finish. On an interruption the running workers are killed."""
    def run(index: int, workers: WorkerGroup | None = None) -> tuple[int, Outcome]:
        inst = suite.instances[index]
        return index, run_instance(inst, suite.path(inst.onnx), suite.path(inst.vnnlib),
                                   effective_timeout(inst, timeout_cap), settings, workers)

    if jobs <= 1:
        for index in indices:
            yield run(index)
        return
    workers = WorkerGroup()
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = [pool.submit(run, index, workers) for index in indices]
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
                 settings: WorkerSettings = WorkerSettings(), workers: WorkerGroup | None = None) -> Outcome:
    """One worker process: a warm worker of this verifier (command None) or the command, with the
    settings' CPU threads and memory cap; killed (with its whole process group) at timeout +
    KILL_AFTER_SECONDS, which counts as a timeout, or once over the memory cap, which is an error."""
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        out = Path(folder) / "result.txt"
        values = dict(onnx=onnx.resolve(), vnnlib=vnnlib.resolve(), timeout=f"{timeout:.10g}", out=out)
        template = WARM_ARGUMENTS + device_arguments(settings.device) if settings.command is None else settings.command
        argv = [part.format(**values) for part in template]
        worker = _WarmWorker if settings.command is None else _CommandWorker
        started = time.monotonic()
        stdout, ending = _run_with_deadline(lambda: worker(argv, settings.threads), timeout + KILL_AFTER_SECONDS,
                                            workers, settings.memory_limit)
        elapsed = time.monotonic() - started
        if ending == _KILLED_AT_DEADLINE:
            return Outcome(instance, TIMEOUT, elapsed, timeout)
        if ending == OUT_OF_MEMORY:
            return Outcome(instance, ERROR, elapsed, timeout, OUT_OF_MEMORY)
        verdict = read_verdict(out, stdout)
    return Outcome(instance, verdict, elapsed, timeout, ending if verdict == ERROR else "")


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

    @property
    def exit_code(self) -> int | None:
        return self.process.returncode

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

    @property
    def exit_code(self) -> int | None:
        return self.process.exitcode

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


_KILLED_AT_DEADLINE = "killed at its deadline"


def _run_with_deadline(start: Callable[[], _CommandWorker | _WarmWorker], deadline: float,
                       workers: WorkerGroup | None, memory_limit: int | None = None) -> tuple[str, str]:
    """Starts a worker; returns its stdout and how it ended: "" (by itself), _KILLED_AT_DEADLINE,
    OUT_OF_MEMORY (killed over the memory cap), or a note on the signal that killed it."""
    worker = start()
    if workers is not None:
        workers.add(worker.pid)
    try:
        stdout, ending = _wait(worker, deadline, memory_limit)
        if ending:
            kill_group(worker.pid)
            worker.reap()
        return stdout, ending or _signal_note(worker.exit_code)
    except BaseException:  # an interruption: leave nothing behind
        kill_group(worker.pid)
        worker.reap()
        raise
    finally:
        if workers is not None:
            workers.remove(worker.pid)


def _wait(worker, seconds: float, memory_limit: int | None) -> tuple[str, str]:
    """(stdout, "") once the worker ends by itself; ("", why) when it must be killed."""
    end = time.monotonic() + seconds
    watch = None if memory_limit is None else MemoryWatch(worker.pid, memory_limit)
    while True:
        left = end - time.monotonic()
        try:
            return worker.finish(max(0.0, left if watch is None else min(left, POLL_SECONDS))), ""
        except subprocess.TimeoutExpired:
            if time.monotonic() >= end:
                return "", _KILLED_AT_DEADLINE
            if watch is not None and watch.exceeded():
                return "", OUT_OF_MEMORY


def _signal_note(exit_code: int | None) -> str:
    if exit_code is None or exit_code >= 0:
        return ""
    if -exit_code == signal.SIGKILL:  # not by us: the kernel's OOM killer, most likely
        return "worker killed by SIGKILL (out of memory?)"
    try:
        return f"worker killed by {signal.Signals(-exit_code).name}"
    except ValueError:
        return f"worker killed by signal {-exit_code}"
