"""Cactus plot: for each tool, its solved instances sorted by time (x = number solved, y = seconds)."""
from __future__ import annotations

from pathlib import Path

from verifier.bench.report import reference_status
from verifier.bench.runner import Outcome
from verifier.bench.scoring import is_solved

OURS = "ours"


def cactus_curves(outcomes: list[Outcome], tools: list[str]) -> dict[str, list[float]]:
    """Tool -> the sorted times of its solved runs (ours first, then each reference tool)."""
    curves = {OURS: sorted(o.time for o in outcomes if is_solved(o.status))}
    for tool in tools:
        curves[tool] = sorted(
            o.instance.references[tool].time for o in outcomes
            if is_solved(reference_status(o, tool) or "") and o.instance.references[tool].time is not None)
    return curves


def build_cactus_figure(curves: dict[str, list[float]], title: str):
    """A matplotlib Figure (Agg canvas, no pyplot state) with one line per tool."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(9, 5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for tool, times in curves.items():
        axes.plot(range(1, len(times) + 1), times, marker="o", markersize=3,
                  linewidth=2.5 if tool == OURS else 1.2, label=f"{tool} ({len(times)})")
    axes.set_yscale("log")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("instances solved")
    axes.set_ylabel("time (s)")
    axes.set_title(f"Cactus plot: {title}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    figure.tight_layout()
    return figure


def save_cactus(path: str | Path, outcomes: list[Outcome], tools: list[str], title: str) -> None:
    build_cactus_figure(cactus_curves(outcomes, tools), title).savefig(path, format="png")
