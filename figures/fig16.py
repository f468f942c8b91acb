"""Fig 16: iteration time bars, first (0-1) vs last (2-3) link slow, 60 vs 120 ms, 4 methods."""

from __future__ import annotations

from pathlib import Path

from figures.base import FigureReport
from figures.cells import Cell, links_key
from figures.measured import MeasuredFigure, make_cell
from figures.table import bar_chart_report, gather

METHODS = ("1f1b", "zb", "pipemorph-cpu", "pipemorph")
LINK_SETS = (((0, 1),), ((2, 3),))
DELAYS = (0.06, 0.12)


def group_name(links: tuple[tuple[int, int], ...], delay_s: float) -> str:
    """``link 2-3, 60 ms``."""
    return f"link {links_key(links).replace('_', '-')}, {delay_s * 1000:g} ms"


class Fig16(MeasuredFigure):
    name = "fig16"
    title = "First vs last link slow"

    def cells(self, quick: bool) -> list[Cell]:
        # Quick keeps both delays (the figure's point) and shortens the runs instead.
        return [
            make_cell(self.name, m, links, d, quick)
            for links in LINK_SETS
            for d in DELAYS
            for m in METHODS
        ]

    def plot(self, results_root: Path, reference: Path | None = None) -> FigureReport:
        data = gather(self, results_root, reference)
        groups = [group_name(links, d) for links in LINK_SETS for d in DELAYS]
        return bar_chart_report(
            self, results_root, data, groups, lambda c: group_name(c.links, c.delay_s),
            list(METHODS), 6.4, data.notes(),
        )


FIGURE = Fig16()
