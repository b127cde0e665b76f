"""Warm workers: each instance runs in a fresh process forked from a server that has already imported
torch and the verifier, so a run pays a few milliseconds of start-up instead of about 2 s.

The server (multiprocessing's forkserver) only imports; it never runs a tensor operation, so no
thread pool exists yet when it forks. Each worker starts its own session (process group), so the
runner can kill it with everything it started, exactly as it does a `cli.py verify` subprocess."""
from __future__ import annotations

import ctypes
import functools
import multiprocessing
import os
import signal
import time

# The modules a verify run needs; importing them once in the server is the whole saving (the
# verifier's own modules: about 60 ms a run, more where no bytecode cache is written).
PRELOAD = ("torch", "onnx", "onnxruntime", "verifier.api", "verifier.cli", "verifier.bench.warm",
           "verifier.pipeline", "verifier.graph.onnx_loader", "verifier.spec.vnnlib",
           "verifier.attack.replay", "verifier.bab.input_split", "verifier.bab.relu_split",
           "verifier.sdp.stage")


@functools.cache
def context():
    """A forkserver context whose server preloads PRELOAD. The server starts at the first worker and
    serves the rest of this process's runs."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


def start_server() -> None:
    """Starts the server and waits until it has imported PRELOAD (about 2 s), so that no instance's
    time includes it."""
    probe = context().Process(target=_exit_at_once)
    probe.start()
    probe.join()


def _exit_at_once() -> None:
    pass


def verify_in_worker(cli_args: list[str], threads: int | None = None) -> None:
    """The worker's body: `cli.py verify` with these arguments (on `threads` CPU threads if given),
    output discarded (the verdict goes to the --out file), exiting as cli.py does."""
    started = time.monotonic()
    os.setsid()
    _die_with_parent()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    from verifier.cli import main_and_exit

    main_and_exit(["verify", *cli_args], started=started)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """SIGKILL this worker when the server that forked it ends, which it does once the bench that
    started it has ended (even by SIGKILL): no orphan keeps computing a row nobody will record
    (Linux). The server ends when no process holds its 'alive' pipe; every worker inherits one
    end of it, which this one closes, so that only the bench keeps the server alive."""
    from multiprocessing import forkserver

    server = forkserver._forkserver
    if server._forkserver_alive_fd is not None:
        os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def result_in_worker(onnx: str, vnnlib: str, timeout: float, connection) -> None:
    """A worker that sends (verdict, stage, seconds) of verifier.verify back through `connection`
    (a multiprocessing Pipe end), for benchmarks that report the path a run took."""
    started = time.monotonic()
    os.setsid()
    _die_with_parent()
    from verifier import api

    result = api.verify(onnx, vnnlib, timeout=timeout, started=started)
    connection.send((result.verdict, result.stage, result.time))
    connection.close()
