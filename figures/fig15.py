"""Fig 15: iteration time vs the delay on link 2-3 (0 to 120 ms) for the four methods.

The 0 ms point is fig20's healthy runs: with no fault 1F1B is itself, and ZB, PipeMorph-CPU
and PipeMorph all run the healthy ZB schedule inline, so the three share fig20's ZB cell.
"""

from __future__ import annotations

import math
from pathlib import Path

from figures.base import FigureReport
from figures.cells import Cell
from figures.measured import MeasuredFigure, make_cell, nofault_cell
from figures.style import METHOD_COLORS, METHOD_MARKERS, label, legend, mark_missing, pyplot
from figures.table import Comparison, Measured, gather, save_report

METHODS = ("1f1b", "zb", "pipemorph-cpu", "pipemorph")
LINKS = ((2, 3),)
DELAYS = (0.02, 0.04, 0.06, 0.08, 0.10, 0.12)
QUICK_DELAYS = (0.06, 0.12)
# The healthy run each method's 0 ms point comes from.
ZERO_MS_SOURCE = {"1f1b": "1f1b", "zb": "zb", "pipemorph-cpu": "zb", "pipemorph": "zb"}


def delays(quick: bool) -> tuple[float, ...]:
    return QUICK_DELAYS if quick else DELAYS


class Fig15(MeasuredFigure):
    name = "fig15"
    title = "Iteration time vs delay on link 2-3"

    def cells(self, quick: bool) -> list[Cell]:
        faulty = [make_cell(self.name, m, LINKS, d, quick) for m in METHODS for d in delays(quick)]
        return [nofault_cell("1f1b", quick), nofault_cell("zb", quick), *faulty]

    def plot(self, results_root: Path, reference: Path | None = None) -> FigureReport:
        data = gather(self, results_root, reference)
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        xs_all = sorted({0.0, *(c.result.cell.delay_s for c in data.comparisons)})
        for mi, method in enumerate(METHODS):
            points = [(x, _point(data, method, x)) for x in xs_all]
            xs = [x * 1000 for x, _ in points]
            ys = [c.result.iteration_time_s if c else math.nan for _, c in points]
            errs = [c.result.std_s if c else math.nan for _, c in points]
            color = METHOD_COLORS[method]
            ax.errorbar(xs, ys, yerr=errs, color=color, marker=METHOD_MARKERS[method],
                        markersize=4, capsize=2, label=label(method))
            for x, y in zip(xs, ys):
                if not math.isfinite(y):
                    # Offset per method so several missing methods at one delay stay readable.
                    mark_missing(ax, x + (mi - 1.5) * 2.2, 2.0)
            if data.has_reference:
                refs = [data.scaled_reference(c) if c else math.nan for _, c in points]
                ax.plot(xs, refs, color=color, linestyle=":", marker=METHOD_MARKERS[method],
                        markerfacecolor="none", markersize=4, linewidth=0.8)
        ax.set_xlabel(f"delay on link 2-3 (ms); {data.tf_text}")
        ax.set_ylabel("iteration time (s)")
        ax.set_ylim(bottom=0)
        suffix = " (dotted: artifact A10, scaled)" if data.has_reference else ""
        ax.set_title(self.title + suffix, fontsize=9)
        fig.text(0.01, 0.01, "0 ms: fig20's no-fault runs (PipeMorph-CPU and PipeMorph = ZB's)",
                 fontsize=6, color="#555555")
        legend(ax, fontsize=7)
        notes = [
            *data.notes(),
            "0 ms: fig20's healthy cells; PipeMorph-CPU and PipeMorph reuse ZB's "
            "(no fault = no offload, healthy ZB schedule)",
        ]
        return save_report(self.name, results_root, fig, data.comparisons, notes)


def _point(data: Measured, method: str, delay_s: float) -> Comparison | None:
    if delay_s == 0:
        return data.find(ZERO_MS_SOURCE[method], "none", 0.0)
    return data.find(method, "2_3", delay_s)


FIGURE = Fig15()
