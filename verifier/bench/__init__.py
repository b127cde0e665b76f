"""Benchmark runner: the verifier on every row of a VNN-COMP style instances.csv, one fresh process per
instance, summarised per benchmark beside reference tools, with a cactus plot.

    instances.py  reading the CSV and the reference results (columns X_result/X_time, best_time, peers)
    scoring.py    correct/wrong/solved/unsolved and VNN-COMP points
    runner.py     worker processes with a hard deadline, progress bar
    report.py     results CSV and the summary table
    plot.py       cactus plot (matplotlib, imported lazily)
    suite_run.py  `bench()`, what `cli.py bench` runs
"""
from verifier.bench.suite_run import bench

__all__ = ["bench"]
