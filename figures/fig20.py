"""Fig 20: the overhead of always-on offload with no fault (1F1B, ZB, PipeMorph-All-CPU)."""

from __future__ import annotations

from pathlib import Path

from figures.base import FigureReport
from figures.cells import Cell
from figures.measured import MeasuredFigure
from figures.style import grouped_bars, label, legend, pyplot
from figures.table import bar_values, gather, save_report


class Fig20(MeasuredFigure):
    name = "fig20"
    title = "No-fault overhead of always-on offload"
    methods = ()
    healthy_methods = ("1f1b", "zb", "all-cpu")

    def plot(self, results_root: Path, cells: list[Cell], reference: Path | None = None) -> FigureReport:
        data = gather(results_root, cells, reference)
        methods = [c.method for c in cells]
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(4.2, 3.2))
        values, ref = bar_values(data, lambda c: "no fault")
        grouped_bars(ax, ["no fault"], methods, values, ref)
        width = 0.8 / max(len(methods), 1)  # grouped_bars' bar positions within the one group
        ax.set_xticks([(i - (len(methods) - 1) / 2) * width for i in range(len(methods))],
                      [label(m) for m in methods])
        ax.set_ylabel("iteration time (s)")
        ax.set_title(f"{self.title}\n({data.tf_text})", fontsize=9)
        legend(ax, fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
        return save_report(self.name, results_root, fig, data.comparisons, data.notes())


FIGURE = Fig20()
