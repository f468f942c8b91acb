"""Fig 16: iteration time bars, first (0-1) vs last link (2-3 at 4 stages) slow, 60 vs 120 ms,
4 methods."""

from __future__ import annotations

from pathlib import Path

from figures.base import FigureReport
from figures.cells import Cell, Link, links_key
from figures.measured import MeasuredFigure, last_link
from figures.table import bar_chart_report, gather

DELAYS = (0.06, 0.12)


def group_name(cell: Cell) -> str:
    """``link 2-3, 60 ms``."""
    return f"link {links_key(cell.links).replace('_', '-')}, {cell.delay_s * 1000:g} ms"


class Fig16(MeasuredFigure):
    name = "fig16"
    title = "First vs last link slow"

    def link_sets(self, stages: int) -> list[tuple[Link, ...]]:
        return [((0, 1),), last_link(stages)]

    def delays(self, quick: bool) -> tuple[float, ...]:
        # Quick keeps both delays (the figure's point).
        return DELAYS

    def plot(self, results_root: Path, cells: list[Cell], reference: Path | None = None) -> FigureReport:
        data = gather(results_root, cells, reference)
        ordered = sorted((c for c in cells if not c.healthy), key=lambda c: (c.links, c.delay_s))
        groups = list(dict.fromkeys(group_name(c) for c in ordered))
        methods = list(dict.fromkeys(c.method for c in cells))
        return bar_chart_report(self, results_root, data, groups, group_name, methods, 6.4, data.notes())


FIGURE = Fig16()
