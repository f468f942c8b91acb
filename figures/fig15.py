"""Fig 15: iteration time vs the delay on the last link (2-3 at 4 stages; 0 to 120 ms) for the
four methods.

The 0 ms point is fig20's healthy runs: with no fault 1F1B is itself, and ZB, PipeMorph-CPU
and PipeMorph all run the healthy ZB schedule inline, so the three share fig20's ZB cell.
"""

from __future__ import annotations

import math
from pathlib import Path

from engine.methods import METHODS
from figures.base import FigureReport
from figures.cells import Cell, links_key
from figures.measured import MeasuredFigure
from figures.style import METHOD_COLORS, METHOD_MARKERS, label, legend, mark_missing, pyplot
from figures.table import Comparison, Measured, gather, save_report

DELAYS = (0.02, 0.04, 0.06, 0.08, 0.10, 0.12)
QUICK_DELAYS = (0.06, 0.12)


class Fig15(MeasuredFigure):
    name = "fig15"
    title = "Iteration time vs delay on the last link"
    healthy_methods = ("1f1b", "zb")

    def delays(self, quick: bool) -> tuple[float, ...]:
        return QUICK_DELAYS if quick else DELAYS

    def plot(self, results_root: Path, cells: list[Cell], reference: Path | None = None) -> FigureReport:
        data = gather(results_root, cells, reference)
        faulty = [c for c in cells if not c.healthy]
        link_text = " + ".join(sorted({links_key(c.links).replace("_", "-") for c in faulty})) or "none"
        methods = list(dict.fromkeys(c.method for c in faulty)) or list(self.methods)
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        xs_all = sorted({0.0, *(c.delay_s for c in faulty)})
        for mi, method in enumerate(methods):
            points = [(x, _point(data, faulty, method, x)) for x in xs_all]
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
        ax.set_xlabel(f"delay on link {link_text} (ms); {data.tf_text}")
        ax.set_ylabel("iteration time (s)")
        ax.set_ylim(bottom=0)
        suffix = " (dotted: artifact A10, scaled)" if data.has_reference else ""
        stages = cells[0].stages if cells else 4
        ax.set_title(f"Iteration time vs delay on link {link_text} ({stages} stages){suffix}", fontsize=9)
        fig.text(0.01, 0.01, "0 ms: fig20's no-fault runs (PipeMorph-CPU and PipeMorph = ZB's)",
                 fontsize=6, color="#555555")
        legend(ax, fontsize=7)
        notes = [
            *data.notes(),
            "0 ms: fig20's healthy cells; PipeMorph-CPU and PipeMorph reuse ZB's "
            "(no fault = no offload, healthy ZB schedule)",
        ]
        return save_report(self.name, results_root, fig, data.comparisons, notes)


def _point(data: Measured, faulty: list[Cell], method: str, delay_s: float) -> Comparison | None:
    if delay_s == 0:
        # with no fault a method runs its healthy schedule inline: 1F1B's, or ZB's (fig20's
        # cells of those two; all-cpu offloads even then, so it is its own)
        source = method if METHODS[method].offload == "always" else METHODS[method].healthy_schedule
        return next((c for c in data.comparisons if c.result.cell.healthy
                     and c.result.cell.method == source), None)
    cell = next((c for c in faulty if c.method == method and c.delay_s == delay_s), None)
    return data.find(method, cell) if cell is not None else None


FIGURE = Fig15()
