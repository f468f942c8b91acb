"""Fig 18 (the artifact ran it but drew no plot): 20/40/60 ms on the last link (2-3 at 4
stages), 4 methods; iteration time and measured bubble rate per method.

Its cells are fig15's (same link, delays and methods), so running fig15 also fills fig18.
"""

from __future__ import annotations

import math
from pathlib import Path

from engine.oplog import LAST_ITERATIONS
from figures.base import FigureReport
from figures.cells import Cell, links_key
from figures.measured import MeasuredFigure
from figures.style import grouped_bars, legend, pyplot
from figures.table import bar_values, gather, predicted_values, save_report

DELAYS = (0.02, 0.04, 0.06)
QUICK_DELAYS = (0.06,)


def group_name(delay_s: float) -> str:
    return f"{delay_s * 1000:g} ms"


class Fig18(MeasuredFigure):
    name = "fig18"
    title = "Iteration time and bubble rate, last link"
    cells_figure = "fig15"  # the same cells as fig15's

    def delays(self, quick: bool) -> tuple[float, ...]:
        return QUICK_DELAYS if quick else DELAYS

    def plot(self, results_root: Path, cells: list[Cell], reference: Path | None = None) -> FigureReport:
        data = gather(results_root, cells, reference)
        methods = list(dict.fromkeys(c.method for c in cells))
        link_text = " + ".join(sorted({links_key(c.links).replace("_", "-") for c in cells}))
        groups = sorted({c.result.cell.delay_s for c in data.comparisons})
        times, ref = bar_values(data, lambda c: group_name(c.delay_s))
        bubbles = {
            (group_name(c.result.cell.delay_s), c.result.cell.method):
                (c.result.bubble_rate * 100, math.nan)
            for c in data.comparisons
        }
        names = [group_name(d) for d in groups]
        plt = pyplot()
        fig, (ax_t, ax_b) = plt.subplots(1, 2, figsize=(8.0, 3.4))
        grouped_bars(ax_t, names, methods, times, ref,
                     predicted_values(data, lambda c: group_name(c.delay_s)))
        ax_t.set_ylabel("iteration time (s)")
        ax_t.set_xlabel(f"delay on link {link_text} ({data.tf_text})")
        legend(ax_t, fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14))
        grouped_bars(ax_b, names, methods, bubbles)
        ax_b.set_ylabel("bubble rate (%)")
        ax_b.set_xlabel(f"delay on link {link_text}")
        fig.suptitle(f"Iteration time and bubble rate, link {link_text}", fontsize=9)
        notes = [
            *data.notes(),
            "bubble rate = 1 - busy compute time / (stages x iteration time), "
            f"last {LAST_ITERATIONS} iterations",
        ]
        return save_report(self.name, results_root, fig, data.comparisons, notes)


FIGURE = Fig18()
