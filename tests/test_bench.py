"""Tests of `cli.py bench`: CSV reading, statuses and score, the worker deadline, summary, plot, CLI.

A fake verifier (a tiny script) stands in for the real one, its verdict chosen by the vnnlib file name;
one end-to-end run uses the real CLI on two small digits instances."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verifier.bench import bench
from verifier.bench.instances import BEST_TIME_TOOL, load_suite
from verifier.bench.plot import build_cactus_figure, cactus_curves
from verifier.bench.report import RESULT_COLUMNS, TOTAL, format_summary, summarise
from verifier.bench import runner
from verifier.bench.runner import CLI_PATH, read_verdict
from verifier.bench.scoring import CORRECT, SOLVED, UNSOLVED, WRONG, Tally, classify
from verifier.errors import UserError

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Same arguments as the real CLI. Every run appends a line to <vnnlib>.runs. The vnnlib stem picks what
# it does:
#   sat_*, unsat_*, unknown_*  write that verdict to --out (and print it)
#   stdout-<verdict>_*         write no file, print the verdict only
#   junk_*                     write "satisfied" (not a verdict)
#   silent_*                   write and print nothing
#   hang_*                     start a grandchild, record its pid, then sleep forever
#   threads_*                  record OMP_NUM_THREADS ("unset" if so) beside the vnnlib, write unsat
#   blowup_*                   take memory, 25 MB at a time up to 1 GB, then write unsat
#   suicide_*                  SIGKILL itself
#   killparent_*               SIGKILL the process that started it (a Ray task's worker), then exit
#   hangonce_*                 the first time: record its pid in <vnnlib>.once and sleep; then unsat
FAKE_VERIFIER = r'''
import os, signal, subprocess, sys, time
from pathlib import Path
_, _, onnx, vnnlib, _, timeout, _, out = sys.argv
kind = Path(vnnlib).stem.split("_")[0]
with open(vnnlib + ".runs", "a") as log:
    log.write("run\n")
if kind == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
    Path(vnnlib + ".pid").write_text(str(child.pid))
    time.sleep(1000)
elif kind == "threads":
    Path(vnnlib + ".threads").write_text(os.environ.get("OMP_NUM_THREADS", "unset"))
    Path(out).write_text("unsat\n")
elif kind == "blowup":
    taken = []
    for _ in range(40):
        taken.append(b"x" * (25 << 20))
        time.sleep(0.02)
    Path(out).write_text("unsat\n")
elif kind == "suicide":
    os.kill(os.getpid(), signal.SIGKILL)
elif kind == "killparent":
    os.kill(os.getppid(), signal.SIGKILL)
elif kind == "hangonce":
    marker = Path(vnnlib + ".once")
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(1000)
    Path(out).write_text("unsat\n")
elif kind.startswith("stdout-"):
    print(kind[len("stdout-"):])
elif kind == "junk":
    Path(out).write_text("satisfied\n")
elif kind != "silent":
    Path(out).write_text(kind + "\n(X_0 0.5)\n")
    print(kind)
'''


@pytest.fixture
def fake_command(tmp_path):
    script = tmp_path / "fake_verifier.py"
    script.write_text(FAKE_VERIFIER)
    return (sys.executable, str(script), "verify", "{onnx}", "{vnnlib}",
            "--timeout", "{timeout}", "--out", "{out}")


def make_suite(folder: Path, rows: list[list[str]], header: list[str] | None = None,
               peers: list[list[str]] | None = None) -> Path:
    """Writes instances.csv (and peers_cpu_results.csv) and creates every file the rows name."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = header or ["onnx", "vnnlib", "timeout"]
    for row in rows:
        record = dict(zip(columns, row))
        for key in ("onnx", "vnnlib"):
            (folder / record[key]).parent.mkdir(parents=True, exist_ok=True)
            (folder / record[key]).write_text("")
    with open(folder / "instances.csv", "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    if peers is not None:
        with open(folder / "peers_cpu_results.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["peer", "benchmark", "onnx", "vnnlib", "expected", "result", "wall_s"])
            writer.writerows(peers)
    return folder / "instances.csv"


def run_bench(csv_path, tmp_path, command, **kwargs):
    out = tmp_path / "results.csv"
    lines = []

    class Capture:
        def write(self, text):
            lines.append(text)

    outcomes = bench(csv_path, out=out, command=command, progress=False, stdout=Capture(), **kwargs)
    return outcomes, "".join(lines), out


HEADER = ["benchmark", "onnx", "vnnlib", "timeout", "expected"]


# ---------------------------------------------------------------- scoring

def test_classify():
    assert classify("sat", "sat") == CORRECT
    assert classify("unsat", "unsat") == CORRECT
    assert classify("unsat", "sat") == WRONG
    assert classify("sat", "unsat") == WRONG
    assert classify("sat", "") == SOLVED
    for verdict in ("unknown", "timeout", "error"):
        assert classify(verdict, "sat") == UNSOLVED
        assert classify(verdict, "") == UNSOLVED


def test_tally_score_and_times():
    tally = Tally()
    for status, seconds in [(CORRECT, 1.0), (CORRECT, 3.0), (SOLVED, 2.0), (WRONG, 0.5), (UNSOLVED, 9.0)]:
        tally.add(status, seconds)
    assert (tally.rows, tally.solved, tally.correct, tally.wrong, tally.unsolved) == (5, 3, 2, 1, 1)
    assert tally.score == 2 * 10 - 150
    assert tally.total_time == 6.0 and tally.median_time == 2.0


def test_read_verdict_is_an_exact_token(tmp_path):
    result = tmp_path / "r.txt"
    result.write_text("  unsat \n(X_0 1)\n")
    assert read_verdict(result, "") == "unsat"
    result.write_text("satisfied\n")
    assert read_verdict(result, "sat\n") == "error"
    result.write_text("\n")
    assert read_verdict(result, "timeout\nmore\n") == "timeout"  # empty file: stdout's first line
    assert read_verdict(tmp_path / "missing.txt", "") == "error"


# ---------------------------------------------------------------- running with the fake verifier

def test_statuses_score_and_results_csv(tmp_path, fake_command):
    rows = [
        ["b1", "onnx/n.onnx", "sat_1.vnnlib", "30", "sat"],             # correct
        ["b1", "onnx/n.onnx", "unsat_1.vnnlib", "30", "sat"],           # wrong: "unsat" is not "sat"
        ["b1", "onnx/n.onnx", "unknown_1.vnnlib", "30", "unsat"],       # unsolved
        ["b2", "onnx/n.onnx", "stdout-unsat_1.vnnlib", "30", "unsat"],  # correct, from stdout
        ["b2", "onnx/n.onnx", "junk_1.vnnlib", "30", "sat"],            # error -> unsolved
        ["b2", "onnx/n.onnx", "silent_1.vnnlib", "30", "sat"],          # error -> unsolved
        ["b2", "onnx/n.onnx", "sat_2.vnnlib", "30", ""],                # solved, no ground truth
    ]
    csv_path = make_suite(tmp_path / "suite", rows, HEADER)
    outcomes, text, out = run_bench(csv_path, tmp_path, fake_command)

    assert [o.verdict for o in outcomes] == ["sat", "unsat", "unknown", "unsat", "error", "error", "sat"]
    assert [o.status for o in outcomes] == [CORRECT, WRONG, UNSOLVED, CORRECT, UNSOLVED, UNSOLVED, SOLVED]
    by_name = {s.name: s for s in summarise(outcomes, [])}
    assert by_name["b1"].ours.score == 10 - 150
    assert by_name["b2"].ours.score == 10
    assert by_name[TOTAL].ours.score == 20 - 150
    assert (by_name[TOTAL].ours.solved, by_name[TOTAL].ours.wrong, by_name[TOTAL].ours.unsolved) == (3, 1, 3)

    with open(out, newline="") as f:
        records = list(csv.DictReader(f))
    assert tuple(records[0]) == RESULT_COLUMNS
    assert [r["status"] for r in records] == [o.status for o in outcomes]
    assert records[1]["instance"] == "onnx/n.onnx|unsat_1.vnnlib"
    assert records[1]["verdict"] == "unsat" and records[1]["expected"] == "sat"
    assert all(float(r["time"]) > 0 for r in records)

    table = text.splitlines()
    assert table[0].split("|")[1].strip() == "benchmark"
    total_line = next(line for line in table if line.startswith(f"| {TOTAL}"))
    total_row = [cell.strip() for cell in total_line.split("|")]
    assert total_row[2:5] == ["7", "3", "1"] and total_row[8] == str(20 - 150)
    assert "total wall time" in text


def test_hung_worker_is_killed_at_its_timeout(tmp_path, fake_command, monkeypatch):
    assert runner.KILL_AFTER_SECONDS == 5.0  # VNN-COMP-like grace; shortened below to keep the test fast
    monkeypatch.setattr(runner, "KILL_AFTER_SECONDS", 1.0)
    csv_path = make_suite(tmp_path / "suite", [["onnx/n.onnx", "hang_1.vnnlib", "30"]])
    started = time.monotonic()
    outcomes, _, _ = run_bench(csv_path, tmp_path, fake_command, timeout_cap=0.5)
    elapsed = time.monotonic() - started

    assert outcomes[0].verdict == "timeout" and outcomes[0].status == UNSOLVED
    assert outcomes[0].timeout == 0.5  # min(row timeout 30, cap 0.5)
    assert 1.5 - 0.05 <= outcomes[0].time < 1.5 + 2
    assert elapsed < 1.5 + 3
    grandchild = int((tmp_path / "suite" / "hang_1.vnnlib.pid").read_text())
    assert _dies_within(grandchild, seconds=3), "the worker's own children must die with it"


def hang_in_warm_worker(cli_args, threads=None):
    """Stands in for warm.verify_in_worker: makes its group, starts a grandchild, then hangs."""
    import os
    os.setsid()
    vnnlib = Path(cli_args[1])
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
    vnnlib.with_suffix(".pid").write_text(str(child.pid))
    time.sleep(1000)


def test_hung_warm_worker_is_killed_with_its_children(tmp_path, monkeypatch):
    from verifier.bench import warm

    monkeypatch.setattr(runner, "KILL_AFTER_SECONDS", 1.0)
    monkeypatch.setattr(warm, "verify_in_worker", hang_in_warm_worker)
    csv_path = make_suite(tmp_path / "suite", [["onnx/n.onnx", "hang_1.vnnlib", "30"]])
    outcomes, _, _ = run_bench(csv_path, tmp_path, None, timeout_cap=0.5)

    assert outcomes[0].verdict == "timeout"
    assert 1.5 - 0.05 <= outcomes[0].time < 1.5 + 2
    grandchild = int((tmp_path / "suite" / "hang_1.pid").read_text())
    assert _dies_within(grandchild, seconds=3), "the warm worker's own children must die with it"


def sigkill_bench_once_a_worker_runs(script: str, pid_file: Path) -> int:
    """Runs the bench script in a process of its own, SIGKILLs it once a worker has written its pid
    to pid_file, and returns that pid."""
    bench_process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _text(pid_file) and time.monotonic() < deadline and bench_process.poll() is None:
            time.sleep(0.05)
        assert _text(pid_file), "the worker never started"
    finally:
        bench_process.kill()
        bench_process.wait()
    return int(_text(pid_file))


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def hang_until_the_bench_dies(cli_args, threads=None):
    """Stands in for warm.verify_in_worker, with its start (own group, dies with the server)."""
    import os
    from verifier.bench import warm

    os.setsid()
    warm._die_with_parent()
    Path(cli_args[1]).with_suffix(".pid").write_text(str(os.getpid()))
    time.sleep(1000)


def test_warm_workers_die_with_a_sigkilled_bench(tmp_path):
    """No orphan keeps computing a row nobody will record: once the bench is SIGKILLed, its warm
    server ends, and so does the worker (its parent-death signal)."""
    csv_path = make_suite(tmp_path / "suite", [["onnx/n.onnx", "hang_1.vnnlib", "300"]])
    script = ("import sys; sys.path.insert(0, {tests!r})\n"
              "import test_bench\nfrom verifier.bench import bench, warm\n"
              "warm.verify_in_worker = test_bench.hang_until_the_bench_dies\n"
              "bench({csv!r}, out={out!r}, progress=False)\n").format(
        tests=str(Path(__file__).parent), csv=str(csv_path), out=str(tmp_path / "results.csv"))
    worker = sigkill_bench_once_a_worker_runs(script, tmp_path / "suite" / "hang_1.pid")
    if not _dies_within(worker, seconds=20):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the warm worker outlived its bench")


def _dies_within(pid: int, seconds: float) -> bool:
    """SIGKILL is delivered asynchronously: give a loaded machine a moment to carry it out."""
    deadline = time.monotonic() + seconds
    while _is_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_headerless_csv_benchmark_from_path_and_filter(tmp_path, fake_command):
    rows = [["acas/onnx/n.onnx", "acas/sat_1.vnnlib", "10"],
            ["mnist/onnx/n.onnx", "mnist/unsat_1.vnnlib", "10"],
            ["onnx/n.onnx", "unsat_2.vnnlib", "10"]]
    csv_path = make_suite(tmp_path / "suite", rows)
    suite = load_suite(csv_path)
    assert [inst.benchmark for inst in suite.instances] == ["acas", "mnist", "suite"]
    assert [inst.expected for inst in suite.instances] == ["", "", ""]
    assert suite.tools == []
    outcomes, _, _ = run_bench(csv_path, tmp_path, fake_command, name_filter="mnist")
    assert [(o.instance.benchmark, o.verdict, o.status) for o in outcomes] == [("mnist", "unsat", SOLVED)]


def test_jobs_keep_the_csv_order(tmp_path, fake_command):
    verdicts = ["sat", "unsat", "unknown", "sat"]
    rows = [["onnx/n.onnx", f"{v}_{k}.vnnlib", "10"] for k, v in enumerate(verdicts)]
    rows.append(rows[1])  # a repeated row is run (and reported) twice
    outcomes, _, out = run_bench(make_suite(tmp_path / "suite", rows), tmp_path, fake_command, jobs=3)
    assert [o.verdict for o in outcomes] == ["sat", "unsat", "unknown", "sat", "unsat"]
    assert len(out.read_text().splitlines()) == 1 + len(rows)


def test_parallel_jobs_share_the_cores_instead_of_each_taking_all(tmp_path, fake_command, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 8)
    for jobs, expected in ((1, "unset"), (2, "4"), (3, "2"), (16, "1")):
        folder = tmp_path / f"jobs{jobs}"
        rows = [["onnx/n.onnx", f"threads_{k}.vnnlib", "10"] for k in range(2)]
        outcomes, _, _ = run_bench(make_suite(folder, rows), folder, fake_command, jobs=jobs)
        assert [o.verdict for o in outcomes] == ["unsat", "unsat"]
        assert {(folder / f"threads_{k}.vnnlib.threads").read_text() for k in range(2)} == {expected}


# ---------------------------------------------------------------- killed workers, memory cap, resume

def runs_of(folder: Path, vnnlib: str) -> int:
    log = folder / f"{vnnlib}.runs"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_a_worker_killed_mid_instance_errs_its_own_row_only(tmp_path, fake_command):
    rows = [["onnx/n.onnx", "sat_1.vnnlib", "30", "sat"], ["onnx/n.onnx", "suicide_2.vnnlib", "30", "sat"],
            ["onnx/n.onnx", "unsat_3.vnnlib", "30", "unsat"]]
    csv_path = make_suite(tmp_path / "suite", rows, ["onnx", "vnnlib", "timeout", "expected"])
    outcomes, _, out = run_bench(csv_path, tmp_path, fake_command, jobs=2)
    assert [(o.verdict, o.note) for o in outcomes] == [("sat", ""), ("error", "worker killed by SIGKILL (out of memory?)"),
                                                       ("unsat", "")]
    with open(out, newline="") as f:  # rows in the order they finished
        notes = {r["vnnlib"]: r["note"] for r in csv.DictReader(f)}
    assert notes == {"sat_1.vnnlib": "", "suicide_2.vnnlib": "worker killed by SIGKILL (out of memory?)", "unsat_3.vnnlib": ""}


def test_memory_cap_turns_a_blow_up_into_one_error_row(tmp_path, fake_command):
    """The blow-up would reach 1 GB and answer unsat; at 0.2 GB it is killed, the suite goes on."""
    rows = [["onnx/n.onnx", "sat_1.vnnlib", "30"], ["onnx/n.onnx", "blowup_2.vnnlib", "30"],
            ["onnx/n.onnx", "unsat_3.vnnlib", "30"]]
    outcomes, _, out = run_bench(make_suite(tmp_path / "suite", rows), tmp_path, fake_command,
                                 memory_limit=0.2)
    assert [(o.verdict, o.note) for o in outcomes] == [("sat", ""), ("error", "out of memory"), ("unsat", "")]
    assert outcomes[1].time < 10
    with open(out, newline="") as f:
        assert [(r["verdict"], r["note"]) for r in csv.DictReader(f)][1] == ("error", "out of memory")


def test_memory_cap_defaults_to_a_fair_share_of_the_ram():
    from verifier.bench.memory import HEADROOM, total_ram
    from verifier.bench.suite_run import _worker_settings

    assert HEADROOM < 1  # a cap at the whole RAM would leave the kernel's OOM killer to act first
    assert _worker_settings(1, None, None, None, None, None).memory_limit == int(total_ram() * HEADROOM)
    assert _worker_settings(4, None, None, None, None, None).memory_limit == int(total_ram() * HEADROOM * 0.25)
    assert _worker_settings(4, None, None, None, None, 1.5).memory_limit == int(1.5 * 2 ** 30)
    assert _worker_settings(1, None, "", 2, None, None).memory_limit is None  # each Ray task: its node's share
    assert _worker_settings(1, None, "", 2, None, None).threads == 2


RESUME_ROWS = ["sat_1", "unsat_2", "sat_3", "hangonce_4", "unsat_5", "sat_6"]


def test_resume_after_sigkill_runs_only_the_missing_rows(tmp_path, fake_command):
    """The bench is SIGKILLed while row 4 runs: the three rows it finished are in the CSV; --resume
    runs rows 4-6 only, and every row appears once."""
    folder = tmp_path / "suite"
    csv_path = make_suite(folder, [["onnx/n.onnx", f"{name}.vnnlib", "60"] for name in RESUME_ROWS])
    out = tmp_path / "results.csv"
    script = (f"from verifier.bench import bench; bench({str(csv_path)!r}, out={str(out)!r}, "
              f"command={fake_command!r}, progress=False)")
    worker = sigkill_bench_once_a_worker_runs(script, folder / "hangonce_4.vnnlib.once")
    os.kill(worker, signal.SIGKILL)  # the orphaned worker of row 4 (its own session)
    with open(out, newline="") as f:
        assert [r["vnnlib"] for r in csv.DictReader(f)] == ["sat_1.vnnlib", "unsat_2.vnnlib", "sat_3.vnnlib"]

    outcomes, text, _ = run_bench(csv_path, tmp_path, fake_command, resume=True)
    with open(out, newline="") as f:
        records = list(csv.DictReader(f))
    assert sorted(r["vnnlib"] for r in records) == sorted(f"{name}.vnnlib" for name in RESUME_ROWS)
    assert [o.verdict for o in outcomes] == ["sat", "unsat", "sat", "unsat", "unsat", "sat"]
    assert [runs_of(folder, f"{name}.vnnlib") for name in RESUME_ROWS] == [1, 1, 1, 2, 1, 1]
    assert "3 kept from an earlier run" in text


def test_resume_drops_a_row_cut_short_and_keeps_repeated_rows_apart(tmp_path, fake_command):
    folder = tmp_path / "suite"
    rows = [["onnx/n.onnx", "sat_1.vnnlib", "10"], ["onnx/n.onnx", "sat_1.vnnlib", "10"],
            ["onnx/n.onnx", "unsat_2.vnnlib", "10"]]
    csv_path = make_suite(folder, rows)
    _, _, out = run_bench(csv_path, tmp_path, fake_command)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[3][:20])  # the first row, then the third cut short
    outcomes, _, _ = run_bench(csv_path, tmp_path, fake_command, resume=True)
    assert [o.verdict for o in outcomes] == ["sat", "sat", "unsat"]
    assert [runs_of(folder, v) for v in ("sat_1.vnnlib", "unsat_2.vnnlib")] == [2 + 1, 1 + 1]
    assert len(out.read_text().splitlines()) == 1 + 3


def test_resume_refuses_a_file_that_is_not_a_results_csv(tmp_path, fake_command):
    csv_path = make_suite(tmp_path / "suite", [["onnx/n.onnx", "sat_1.vnnlib", "10"]])
    (tmp_path / "results.csv").write_text("name,score\nx,1\n")
    with pytest.raises(UserError, match="results CSV"):
        run_bench(csv_path, tmp_path, fake_command, resume=True)


# ---------------------------------------------------------------- references, summary, plot

REFERENCE_HEADER = HEADER + ["abcrown_result", "abcrown_time", "best_time"]
REFERENCE_ROWS = [
    ["b1", "onnx/n.onnx", "sat_1.vnnlib", "30", "sat", "sat", "2.0", "1.0"],
    ["b1", "onnx/n.onnx", "unsat_1.vnnlib", "30", "unsat", "sat", "3.0", "0.5"],    # abcrown wrong
    ["b1", "onnx/n.onnx", "unknown_1.vnnlib", "30", "unsat", "timeout", "30", ""],  # nobody solved it
    ["b2", "onnx/n.onnx", "sat_2.vnnlib", "60", "sat", "sat", "50.0", "40.0"],       # too slow for the cap
    ["b2", "onnx/n.onnx", "sat_3.vnnlib", "30", "sat", "", "", "4.0"],               # abcrown not run
]
PEER_ROWS = [
    ["nnenum", "b1", "onnx/n.onnx", "sat_1.vnnlib", "sat", "sat", "1.5"],
    ["nnenum", "b1", "onnx/n.onnx", "unsat_1.vnnlib", "unsat", "unsat", "2.5"],
    ["nnenum", "b1", "onnx/n.onnx", "unknown_1.vnnlib", "unsat", "timeout", "30"],
]


def test_reference_columns_and_peers_are_summarised(tmp_path, fake_command):
    csv_path = make_suite(tmp_path / "suite", REFERENCE_ROWS, REFERENCE_HEADER, PEER_ROWS)
    outcomes, text, _ = run_bench(csv_path, tmp_path, fake_command, timeout_cap=45)
    tools = load_suite(csv_path).tools
    assert tools == ["abcrown", BEST_TIME_TOOL, "nnenum (cpu)"]

    by_name = {s.name: s for s in summarise(outcomes, tools)}
    abcrown = by_name["b1"].references["abcrown"]
    assert (abcrown.rows, abcrown.solved, abcrown.wrong, abcrown.unsolved) == (3, 1, 1, 1)
    assert abcrown.total_time == 2.0
    assert by_name["b2"].references["abcrown"].rows == 1  # one row not run
    assert by_name["b2"].references["abcrown"].solved == 0  # 50 s > the 45 s cap
    best = by_name[TOTAL].references[BEST_TIME_TOOL]
    assert (best.solved, best.wrong, best.unsolved) == (4, 0, 1)  # a best time counts as solved
    assert sorted(best.solved_times) == [0.5, 1.0, 4.0, 40.0]
    nnenum = by_name["b1"].references["nnenum (cpu)"]
    assert (nnenum.solved, nnenum.total_time, nnenum.median_time) == (2, 4.0, 2.0)
    assert by_name["b2"].references["nnenum (cpu)"].rows == 0

    table = format_summary(list(by_name.values()), tools)
    b2_row = next(line for line in table.splitlines() if line.startswith("| b2"))
    assert "not run" in b2_row
    b1_row = next(line for line in table.splitlines() if line.startswith("| b1"))
    assert "1, 1 wrong, 2.0/2.0 s" in b1_row and "2, 0 wrong, 4.0/2.0 s" in b1_row
    assert text.startswith(table.splitlines()[0])


def test_cactus_plot(tmp_path, fake_command):
    csv_path = make_suite(tmp_path / "suite", REFERENCE_ROWS, REFERENCE_HEADER, PEER_ROWS)
    plot = tmp_path / "cactus.png"
    outcomes, _, _ = run_bench(csv_path, tmp_path, fake_command, plot=plot)
    assert plot.read_bytes()[:8] == PNG_MAGIC

    tools = load_suite(csv_path).tools
    curves = cactus_curves(outcomes, tools)
    assert list(curves) == ["ours", *tools]
    assert len(curves["ours"]) == 4  # all but unknown_1
    assert curves["abcrown"] == [2.0, 50.0]  # no cap: 50 s is within the row's 60 s
    assert curves[BEST_TIME_TOOL] == [0.5, 1.0, 4.0, 40.0]
    figure = build_cactus_figure(curves, "suite/instances.csv")
    axes = figure.axes[0]
    assert len(axes.lines) == 1 + len(tools)
    assert axes.get_yscale() == "log"
    assert "instances.csv" in axes.get_title()


# ---------------------------------------------------------------- malformed input and the CLI

@pytest.mark.parametrize("content, message", [
    ("onnx,vnnlib\nonnx/n.onnx,sat_1.vnnlib\n", "lacks column(s) timeout"),
    ("onnx/n.onnx,sat_1.vnnlib,ten\n", "timeout is not a number"),
    ("onnx/n.onnx,sat_1.vnnlib,10,extra\n", "only 3 columns"),
    ("", "no instances"),
    ("onnx/missing.onnx,sat_1.vnnlib,10\n", "file not found"),
])
def test_malformed_csv(tmp_path, content, message):
    make_suite(tmp_path, [["onnx/n.onnx", "sat_1.vnnlib", "10"]])
    (tmp_path / "instances.csv").write_text(content)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_suite(tmp_path / "instances.csv")


def test_cli_missing_csv_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, str(CLI_PATH), "bench", str(tmp_path / "nope.csv")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.csv'}: file not found"]
    assert not (tmp_path / "bench_results.csv").exists()


@pytest.mark.parametrize("start", ["warm", "cold"])
def test_end_to_end_real_verifier(tmp_path, start):
    """`cli.py bench` with the real verifier on the first two digits_mlp rows of bench_instances (the
    filter drops a digits_cnn row), paths resolved against --root; warm workers (the default) and
    fresh `cli.py verify` processes (--cold) give the known verdicts."""
    source = REPO / "bench_instances" / "instances.csv"
    lines = source.read_text().splitlines()
    mlp = [line for line in lines[1:] if "digits_mlp" in line][:2]
    cnn = [line for line in lines[1:] if "digits_cnn" in line][:1]
    (tmp_path / "two.csv").write_text("\n".join([lines[0], *mlp, *cnn]) + "\n")
    out, plot = tmp_path / "results.csv", tmp_path / "cactus.png"
    proc = subprocess.run(
        [sys.executable, str(CLI_PATH), "bench", str(tmp_path / "two.csv"), "--root", str(source.parent),
         "--filter", "digits_mlp", "--timeout-cap", "20", "--out", str(out), "--plot", str(plot),
         *(["--cold"] if start == "cold" else [])],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with open(out, newline="") as f:
        records = list(csv.DictReader(f))
    assert len(records) == 2 and {r["benchmark"] for r in records} == {"digits_mlp"}
    assert [r["status"] for r in records] == [CORRECT, CORRECT], records
    assert ("warm workers" in proc.stdout) == (start == "warm")
    assert proc.stdout.startswith("| benchmark")
    assert plot.read_bytes()[:8] == PNG_MAGIC
