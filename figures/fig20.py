"""Fig 20: the overhead of always-on offload with no fault (1F1B, ZB, PipeMorph-All-CPU)."""

from __future__ import annotations

from pathlib import Path

from figures.base import FigureReport, Progress
from figures.cells import Cell
from figures.measured import estimate_seconds, make_cell
from figures.style import grouped_bars, label, legend, pyplot, save
from figures.table import build_report, gather

METHODS = ("1f1b", "zb", "all-cpu")


def nofault_cell(method: str, quick: bool) -> Cell:
    """fig20's healthy run of ``method`` (fig15 reuses the 1f1b and zb ones for its 0 ms point)."""
    return make_cell("fig20", method, (), 0.0, quick)


class Fig20:
    name = "fig20"
    title = "No-fault overhead of always-on offload"
    kind = "measured"

    def cells(self, quick: bool) -> list[Cell]:
        return [nofault_cell(m, quick) for m in METHODS]

    def estimate_seconds(self, quick: bool) -> float:
        return estimate_seconds(self.cells(quick))

    def compute(self, fig_dir: Path, quick: bool, progress: Progress | None = None) -> None:
        return None

    def plot(self, results_root: Path, reference: Path | None = None) -> FigureReport:
        data = gather(self.cells(False), self.cells(True), results_root, reference)
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(4.2, 3.2))
        values, ref = {}, {}
        for c in data.comparisons:
            key = ("no fault", c.result.cell.method)
            values[key] = (c.result.iteration_time_s, c.result.std_s)
            ref[key] = data.scaled_reference(c)
        grouped_bars(ax, ["no fault"], list(METHODS), values, ref)
        width = 0.8 / len(METHODS)  # grouped_bars' bar positions within the one group
        ax.set_xticks([(i - (len(METHODS) - 1) / 2) * width for i in range(len(METHODS))],
                      [label(m) for m in METHODS])
        ax.set_ylabel("iteration time (s)")
        ax.set_title(f"{self.title}\n({data.tf_text})", fontsize=9)
        legend(ax, fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
        out_dir = results_root / self.name
        files = save(fig, out_dir, self.name)
        return build_report(self.name, out_dir, files, data.comparisons, data.notes())


FIGURE = Fig20()
