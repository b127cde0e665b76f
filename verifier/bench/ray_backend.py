"""Suites on Ray: each instance is one Ray task that runs the same isolated worker as the local pool
(runner.run_instance: a warm worker forked in the task's node, or the command), with the task's CPUs
as its threads and one GPU where the workers run on CUDA. Outcomes come back as tasks finish.

Ray is an optional extra (`pip install -e .[ray]`) and is imported only here. On a cluster every
node needs this project installed and the suite's files at the same paths (a shared folder)."""
from __future__ import annotations

import functools
import os
from dataclasses import replace
from typing import Iterator

from verifier.bench.instances import Suite
from verifier.bench.memory import fair_share
from verifier.bench.runner import Outcome, WorkerSettings, effective_timeout, run_instance
from verifier.bench.scoring import ERROR
from verifier.errors import UserError


def run_all(suite: Suite, indices: list[int], timeout_cap: float | None, settings: WorkerSettings,
            address: str) -> Iterator[tuple[int, Outcome]]:
    """(row index, outcome) as the tasks finish. Connects to the cluster at `address` ("" starts a
    local Ray) unless this process is connected already; shuts down only a Ray it started. A task
    that dies (its worker process killed, its node lost) gives its own row an error; an interruption
    cancels the tasks still pending or running."""
    ray = _import_ray()
    started_here = _connect(ray, address)
    pending = {}
    try:
        task = ray.remote(_run_task).options(num_cpus=settings.threads or 1, max_retries=0,
                                             num_gpus=1 if settings.device == "cuda" else 0)
        for index in indices:
            inst = suite.instances[index]
            ref = task.remote(inst, str(suite.path(inst.onnx).resolve()), str(suite.path(inst.vnnlib).resolve()),
                              effective_timeout(inst, timeout_cap), settings)
            pending[ref] = index
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            yield index, _outcome(ray, done[0], suite.instances[index], effective_timeout(suite.instances[index],
                                                                                            timeout_cap))
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: pip install -e '.[ray]'") from None
    return ray


def _connect(ray, address: str) -> bool:
    """Connects (or starts a local Ray where address is ""); True when this call did."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserError(f"--ray {address}: cannot connect to a Ray cluster there ({e})") from None
    return True


def _outcome(ray, ref, instance, timeout: float) -> Outcome:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as e:
        return Outcome(instance, ERROR, 0.0, timeout, f"Ray task failed ({type(e).__name__})")


def _run_task(instance, onnx: str, vnnlib: str, timeout: float, settings: WorkerSettings) -> Outcome:
    """The body of one Ray task, in a Ray worker process of some node: the instance's worker, under a
    memory cap of this node's RAM shared among its CPUs unless one is set."""
    from pathlib import Path

    if settings.command is None:
        _warm_server()
    if settings.memory_limit is None:
        settings = replace(settings, memory_limit=fair_share((settings.threads or 1) / (os.cpu_count() or 1)))
    return run_instance(instance, Path(onnx), Path(vnnlib), timeout, settings)


@functools.cache
def _warm_server() -> None:
    """Starts this Ray worker process's warm server once (its start is not part of any instance's
    time); Ray reuses the process for later tasks."""
    from verifier.bench import warm

    warm.start_server()
