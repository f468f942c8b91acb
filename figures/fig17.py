"""Fig 17: several slow links at once ("0_1,1_2" and "0_1,2_3" at 60 ms), 4 methods."""

from __future__ import annotations

from pathlib import Path

from figures.base import FigureReport
from figures.cells import Cell, links_key
from figures.measured import MeasuredFigure, make_cell
from figures.style import grouped_bars, legend, pyplot
from figures.table import bar_values, gather, save_report

METHODS = ("1f1b", "zb", "pipemorph-cpu", "pipemorph")
LINK_SETS = (((0, 1), (1, 2)), ((0, 1), (2, 3)))
DELAY = 0.06


def group_name(links: tuple[tuple[int, int], ...]) -> str:
    """``links 0-1 + 2-3``."""
    return "links " + " + ".join(f"{a}-{b}" for a, b in links)


class Fig17(MeasuredFigure):
    name = "fig17"
    title = "Multiple slow links at 60 ms"

    def cells(self, quick: bool) -> list[Cell]:
        return [make_cell(self.name, m, links, DELAY, quick) for links in LINK_SETS for m in METHODS]

    def plot(self, results_root: Path, reference: Path | None = None) -> FigureReport:
        data = gather(self, results_root, reference)
        groups = [group_name(links) for links in LINK_SETS]
        values, ref = bar_values(data, lambda c: group_name(c.links))
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.0, 3.4))
        grouped_bars(ax, groups, list(METHODS), values, ref)
        ax.set_ylabel("iteration time (s)")
        ax.set_title(f"{self.title} ({data.tf_text})", fontsize=9)
        legend(ax, fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.14))
        notes = [*data.notes(), f"slow links: {', '.join(links_key(ls) for ls in LINK_SETS)}"]
        return save_report(self.name, results_root, fig, data.comparisons, notes)


FIGURE = Fig17()
