"""Judging verdicts against the ground truth, and tallying a tool's runs VNN-COMP style."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

SAT, UNSAT, UNKNOWN, TIMEOUT, ERROR = "sat", "unsat", "unknown", "timeout", "error"
VERDICTS = (SAT, UNSAT, UNKNOWN, TIMEOUT, ERROR)
DECISIVE = (SAT, UNSAT)

CORRECT, WRONG, SOLVED, UNSOLVED = "correct", "wrong", "solved", "unsolved"
POINTS_CORRECT = 10
POINTS_WRONG = -150


def classify(verdict: str, expected: str) -> str:
    """`correct`/`wrong` against a sat/unsat ground truth; `solved` for a sat/unsat answer where
    there is none; `unsolved` for anything else (unknown, timeout, error)."""
    if verdict not in DECISIVE:
        return UNSOLVED
    if expected not in DECISIVE:
        return SOLVED
    return CORRECT if verdict == expected else WRONG


def is_solved(status: str) -> bool:
    return status in (CORRECT, SOLVED)


@dataclass
class Tally:
    """One tool's runs on a set of instances."""

    rows: int = 0
    correct: int = 0
    solved: int = 0  # correct + sat/unsat answers where there is no ground truth
    wrong: int = 0
    unsolved: int = 0
    solved_times: list[float] = field(default_factory=list)  # the known times of solved runs

    def add(self, status: str, time: float | None) -> None:
        self.rows += 1
        if status == WRONG:
            self.wrong += 1
        elif is_solved(status):
            self.solved += 1
            self.correct += status == CORRECT
            if time is not None:
                self.solved_times.append(time)
        else:
            self.unsolved += 1

    @property
    def score(self) -> int:
        return POINTS_CORRECT * self.correct + POINTS_WRONG * self.wrong

    @property
    def total_time(self) -> float:
        return sum(self.solved_times)

    @property
    def median_time(self) -> float | None:
        return statistics.median(self.solved_times) if self.solved_times else None
