"""Fig 14: measured timelines of ZB, PipeMorph-CPU and PipeMorph at 60 ms on link 2-3, one
post-fault iteration each, on one time axis.

Its cells are fig16's (link 2-3 at 60 ms is one of fig16's bars), as in the artifact's
shared fig14_16 folder.
"""

from __future__ import annotations

from pathlib import Path

from engine.oplog import read_records
from figures.base import FigureReport
from figures.cells import Cell, cell_folder
from figures.measured import MeasuredFigure, make_cell
from figures.style import label, pyplot
from figures.table import gather, save_report
from figures.timeline import NoOpsError, draw_iteration, iteration_ops, last_complete_iteration

METHODS = ("zb", "pipemorph-cpu", "pipemorph")
LINKS = ((2, 3),)
DELAY = 0.06
CELLS_FIGURE = "fig16"


class Fig14(MeasuredFigure):
    name = "fig14"
    title = "Measured timelines at 60 ms on link 2-3"

    def cells(self, quick: bool) -> list[Cell]:
        return [make_cell(CELLS_FIGURE, m, LINKS, DELAY, quick) for m in METHODS]

    def plot(self, results_root: Path, reference: Path | None = None) -> FigureReport:
        data = gather(self, results_root, reference)
        plt = pyplot()
        fig, axes = plt.subplots(len(METHODS), 1, figsize=(10, 2.3 * len(METHODS)), sharex=True)
        longest = 0.0
        for ax, c in zip(axes, data.comparisons):
            r = c.result
            name = label(r.cell.method)
            if not r.ok:
                ax.text(0.5, 0.5, f"{name}: n/a ({r.status})", transform=ax.transAxes, ha="center")
                ax.set_yticks([])
                continue
            records = read_records(cell_folder(results_root, r.cell))
            try:
                it = last_complete_iteration(records)
            except NoOpsError:
                continue
            end = draw_iteration(ax, iteration_ops(records, it), legend=ax is axes[-1])
            longest = max(longest, end)
            ax.set_title(f"{name}: iteration {it} (after the fault), {end:.0f} ms", fontsize=8)
        for ax in axes:
            ax.set_xlim(0, longest * 1.01 if longest else 1)
        axes[-1].set_xlabel(f"time since the iteration start (ms); {data.tf_text}")
        return save_report(self.name, results_root, fig, data.comparisons, data.notes())


FIGURE = Fig14()
