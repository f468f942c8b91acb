"""Fig 14: measured timelines of ZB, PipeMorph-CPU and PipeMorph at 60 ms on the last link
(2-3 at 4 stages), one post-fault iteration each, on one time axis.

Its cells are fig16's (link 2-3 at 60 ms is one of fig16's bars), as in the artifact's
shared fig14_16 folder.
"""

from __future__ import annotations

from pathlib import Path

from engine.oplog import read_records
from figures.base import FigureReport
from figures.cells import Cell, cell_folder
from figures.measured import MeasuredFigure
from figures.style import label, pyplot
from figures.table import gather, save_report
from figures.timeline import NoOpsError, draw_iteration, iteration_ops, last_complete_iteration

DELAY = 0.06


class Fig14(MeasuredFigure):
    name = "fig14"
    title = "Measured timelines at 60 ms on the last link"
    methods = ("zb", "pipemorph-cpu", "pipemorph")
    cells_figure = "fig16"  # fig16's cells, as in the artifact's shared fig14_16 folder

    def delays(self, quick: bool) -> tuple[float, ...]:
        return (DELAY,)

    def plot(self, results_root: Path, cells: list[Cell], reference: Path | None = None) -> FigureReport:
        data = gather(results_root, cells, reference)
        plt = pyplot()
        rows = max(len(cells), 1)
        fig, axes = plt.subplots(rows, 1, figsize=(10, 2.3 * rows), sharex=True, squeeze=False)
        axes = [row[0] for row in axes]
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
