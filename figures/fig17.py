"""Fig 17: several slow links at once ("0_1,1_2" and "0_1,2_3" at 60 ms), 4 methods."""

from __future__ import annotations

from pathlib import Path

from figures.base import FigureReport
from figures.cells import Cell, links_key
from figures.measured import MeasuredFigure, make_cell
from figures.table import bar_chart_report, gather

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
        notes = [*data.notes(), f"slow links: {', '.join(links_key(ls) for ls in LINK_SETS)}"]
        return bar_chart_report(
            self, results_root, data, groups, lambda c: group_name(c.links), list(METHODS), 5.0, notes
        )


FIGURE = Fig17()
