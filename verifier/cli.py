"""Command line: `python cli.py verify|bounds ...`. Heavy imports happen after argument parsing,
so that `--help` is instant and the timeout clock covers everything."""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from typing import NoReturn

EXIT_USER_ERROR = 2
_GRACE_SECONDS = 0.5  # the watchdog fires this long after the timeout if a stage overruns


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py", description="Neural-network verifier (ONNX + VNN-LIB).")
    sub = parser.add_subparsers(dest="command", required=True)

    v = sub.add_parser("verify", help="decide a property: sat, unsat, unknown or timeout")
    v.add_argument("model", help="ONNX model")
    v.add_argument("spec", help="VNN-LIB property")
    v.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    v.add_argument("--out", help="write a VNN-COMP result file here")
    v.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--split", choices=["auto", "input", "relu"], default="auto",
                   help="branch and bound on input boxes or ReLU neurons (default: chosen per problem)")
    v.add_argument("--method", choices=["auto", "smt"], default="auto",
                   help="auto: the staged pipeline; smt: the exact z3 path alone (for testing and comparison)")
    v.add_argument("--certificate", help="for unsat, write a certificate here (check it with check-certificate)")

    k = sub.add_parser("check-certificate", help="re-check an unsat certificate independently of the verifier: "
                       "valid (exit 0) or invalid (exit 1)")
    k.add_argument("model", help="ONNX model")
    k.add_argument("spec", help="VNN-LIB property")
    k.add_argument("certificate", help="the file written by verify --certificate")
    k.add_argument("--trust-z3", action="store_true", help="accept leaves closed by z3 (marked trusted-z3) "
                   "without re-checking them")
    k.add_argument("--ignore-hashes", action="store_true", help="check even when the model's or the spec's "
                   "sha256 differs from the certificate's")

    b = sub.add_parser("bounds", help="bounds of every output over the spec's input boxes")
    b.add_argument("model")
    b.add_argument("spec")
    b.add_argument("--method", choices=["ibp", "crown", "sdp"], default="crown",
                   help="sdp: low-rank SDP over alpha-CROWN (ReLU chains)")
    b.add_argument("--json", action="store_true", help="one JSON object per input box")
    b.add_argument("--device", choices=["cpu", "cuda"], default="cpu")

    r = sub.add_parser("bench", help="run every instance of an instances.csv; summary table and cactus plot")
    r.add_argument("instances", help="instances.csv: rows onnx,vnnlib,timeout, or a header naming those")
    r.add_argument("--root", help="folder the CSV's paths are relative to (default: the CSV's folder)")
    r.add_argument("--timeout-cap", type=float, help="at most this many seconds per instance")
    r.add_argument("--out", default="bench_results.csv", help="results CSV (default bench_results.csv)")
    r.add_argument("--plot", help="write a cactus plot (PNG) here")
    r.add_argument("--filter", help="only rows whose benchmark, onnx or vnnlib path contains this")
    r.add_argument("--jobs", type=int, default=1, help="instances run at a time (default 1; timings "
                   "are only comparable with 1)")
    r.add_argument("--cold", action="store_true", help="start each instance as `python cli.py verify`, "
                   "start-up (~2 s of torch import) included, as VNN-COMP times tools; default: workers "
                   "forked from a process that imported torch once")
    r.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="run each instance as a Ray task on "
                   "the cluster at ADDRESS (e.g. ray://head:10001 or auto); without ADDRESS, Ray starts locally")
    r.add_argument("--cpus-per-task", type=int, help="CPU threads of each instance (Ray: CPUs reserved per task; "
                   "default 1 there, the cores divided by --jobs locally)")
    r.add_argument("--device", choices=["cpu", "cuda"], help="device of every instance (default: the "
                   "verifier's, CUDA where present); with --ray, cuda reserves one GPU per task")
    r.add_argument("--memory-limit", type=float, metavar="GB", help="kill an instance whose memory passes "
                   "this (reported as error: out of memory); default: 85%% of the RAM divided by --jobs (on Ray: a "
                   "node's RAM divided among its CPUs, times --cpus-per-task)")
    r.add_argument("--resume", action="store_true", help="keep the rows already in --out and run only the "
                   "others (after an interrupted or killed run)")

    s = sub.add_parser("soundness", help="soundness sets with hidden planted counterexamples: generate, check")
    s_sub = s.add_subparsers(dest="soundness_command", required=True)
    g = s_sub.add_parser("generate", help="train small networks with planted hidden counterexamples, and "
                         "MILP-proved controls")
    g.add_argument("--out", required=True, help="folder for onnx/, vnnlib/, witnesses/, instances.csv")
    g.add_argument("--count", type=int, default=10, help="networks to train (default 10); each gives up to "
                   "2 planted instances and, if ReLU, a control")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--arch", choices=["mlp", "cnn", "resnet", "mixed"], default="mixed")
    g.add_argument("--act", choices=["relu", "tanh", "sigmoid", "mixed"], default="mixed")
    g.add_argument("--timeout", type=float, default=30.0, help="per-instance timeout written to instances.csv")
    c = s_sub.add_parser("check", help="run a verifier on every instance of a set; exit 1 on any UNSOUND or "
                         "BAD-WITNESS")
    c.add_argument("dir", help="a folder made by `soundness generate`")
    which = c.add_mutually_exclusive_group()
    which.add_argument("--verifier", default="ours", help="ours (default: cli.py verify), marabou (maraboupy), "
                       "or vnncomp:PATH (a tool with PATH/prepare_instance.sh and PATH/run_instance.sh)")
    which.add_argument("--command", dest="verifier_command", help="any other verifier: a command template with "
                       "{onnx} {vnnlib} {timeout} {result} that writes a VNN-COMP result file to {result}")
    c.add_argument("--timeout", type=float, help="seconds per instance (default: instances.csv's)")
    c.add_argument("--out", default="soundness_results.csv", help="results CSV (default soundness_results.csv)")
    c.add_argument("--filter", help="only instances whose vnnlib path contains this")
    return parser


class Reporter:
    """Prints the verdict exactly once, from the main thread or from the timeout watchdog."""

    def __init__(self, out_path: str | None):
        self.out_path = out_path
        self.lock = threading.Lock()
        self.done = False
        self.verdict_fd: int | None = None  # the real stdout while the stages run (see verdict_first)

    def report(self, text: str, note: str = "") -> bool:
        """Write the result file; print it (only its verdict line when it went to a file)."""
        with self.lock:
            if self.done:
                return False
            self.done = True
            if self.out_path:
                with open(self.out_path, "w") as f:
                    f.write(text)
                text = text.splitlines()[0] + "\n"
            if self.verdict_fd is None:
                sys.stdout.write(text)
                sys.stdout.flush()
            else:
                os.write(self.verdict_fd, text.encode())
            if note:
                print(note, file=sys.stderr, flush=True)
            return True


@contextmanager
def verdict_first(reporter: Reporter):
    """While the stages run, file descriptor 1 points at stderr and only the reporter writes to
    the real stdout, so that the verdict is always its first line: native solvers write to fd 1
    directly (HiGHS, through scipy's MILP, prints
    'HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();')."""
    sys.stdout.flush()
    reporter.verdict_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(reporter.verdict_fd, 1)
        os.close(reporter.verdict_fd)
        reporter.verdict_fd = None


def _check_device(device: str) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            from verifier.errors import UserError

            raise UserError("--device cuda: no CUDA device is available")


def _check_files_exist(*paths: str) -> None:
    from verifier.errors import UserError

    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f"{path}: file not found")


def cmd_verify(args, started: float) -> int:
    reporter = Reporter(args.out)
    with verdict_first(reporter):
        return _verify(args, started, reporter)


def _verify(args, started: float, reporter: Reporter) -> int:
    from verifier.errors import UserError


    def on_timeout():
        if reporter.report("timeout\n", f"timeout after {time.monotonic() - started:.1f} s"):
            os._exit(0)

    watchdog = threading.Timer(max(0.0, started + args.timeout + _GRACE_SECONDS - time.monotonic()), on_timeout)
    watchdog.daemon = True
    watchdog.start()
    try:
        _check_files_exist(args.model, args.spec)  # before torch's import, which takes ~2 s
        from verifier import api

        _check_device(args.device)
        result = api.verify(args.model, args.spec, timeout=args.timeout, started=started,
                            device=args.device, seed=args.seed, split=args.split,
                            method=args.method, certificate=args.certificate)
    except UserError as e:
        reporter.report("error\n", f"error: {e}")
        return EXIT_USER_ERROR
    except Exception:  # an internal bug: say so, with the traceback for the report
        reporter.report("error\n", "internal error:\n" + traceback.format_exc())
        return 1
    reporter.report(result.result_file_text(), f"{result.verdict} ({result.stage}) in {result.time:.2f} s")
    return 0


def cmd_bounds(args) -> int:
    from verifier import api

    _check_device(args.device)
    graph = api.load_model(args.model)
    for k, region in enumerate(api.load_spec(args.spec, graph)):
        lower, upper = api.bounds(graph, region, method=args.method, device=args.device)
        if args.json:
            print(json.dumps({"lower": lower.tolist(), "upper": upper.tolist()}))
            continue
        print(f"input box {k}:")
        for j, (lo, hi) in enumerate(zip(lower, upper)):
            print(f"  Y_{j}: [{lo:.9g}, {hi:.9g}]")
    return 0


def cmd_bench(args) -> int:
    from verifier.bench import bench
    from verifier.bench.runner import cold_command

    try:
        bench(args.instances, root=args.root, timeout_cap=args.timeout_cap, out=args.out, plot=args.plot,
              name_filter=args.filter, jobs=args.jobs, command=cold_command(args.device) if args.cold else None,
              ray=args.ray, cpus_per_task=args.cpus_per_task, device=args.device,
              memory_limit=args.memory_limit, resume=args.resume)
    except KeyboardInterrupt:
        print(f"interrupted: the finished instances are in {args.out} (--resume runs the others)", file=sys.stderr)
        return 130
    return 0


def cmd_soundness(args) -> int:
    if args.soundness_command == "generate":
        from verifier.soundness.generate import GenerateConfig, format_report, generate

        config = GenerateConfig(count=args.count, seed=args.seed, arch=args.arch, act=args.act,
                                timeout=args.timeout)
        print(format_report(generate(args.out, config), args.out))
        return 0
    from verifier.soundness.adapters import from_command, resolve
    from verifier.soundness.check import check, format_table, write_csv

    adapter = from_command(args.verifier_command) if args.verifier_command else resolve(args.verifier)
    report = check(args.dir, command=adapter, timeout=args.timeout, name_filter=args.filter)
    write_csv(report, args.out)
    print(format_table(report))
    print(f"results: {args.out}")
    return 1 if report.failed else 0


def cmd_check_certificate(args) -> int:
    """Imports only verifier.certcheck (numpy and onnx): none of the verifier's engine."""
    from verifier.certcheck import CheckerError, check_certificate

    try:
        for path in (args.model, args.spec, args.certificate):
            if not os.path.isfile(path):
                raise CheckerError(f"{path}: file not found")
        outcome = check_certificate(args.model, args.spec, args.certificate, trust_z3=args.trust_z3,
                                    check_hashes=not args.ignore_hashes)
    except CheckerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(outcome.message)
    stats = outcome.stats
    print(f"{stats.get('leaves', 0)} leaves checked in {stats.get('seconds', 0):.2f} s", file=sys.stderr)
    return 0 if outcome.valid else 1


def main(argv: list[str] | None = None, started: float | None = None) -> int:
    started = time.monotonic() if started is None else started
    args = build_parser().parse_args(argv)
    if args.command == "verify":
        return cmd_verify(args, started)
    if args.command == "check-certificate":
        return cmd_check_certificate(args)
    from verifier.errors import UserError

    try:
        return {"bounds": cmd_bounds, "bench": cmd_bench, "soundness": cmd_soundness}[args.command](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR


def main_and_exit(argv: list[str], started: float) -> NoReturn:
    """main, then exit without the interpreter's teardown: every file is written and closed by
    then, and the teardown costs about 0.5 s once torch is loaded (a tenth of a small benchmark's
    total)."""
    code = main(argv, started=started)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
