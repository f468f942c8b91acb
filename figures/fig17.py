"""Fig 17: several slow links at once at 60 ms, 4 methods: the artifact's "0_1,1_2" and
"0_1,2_3" at 4 stages; from 8 stages the paper's sets (first link with the second, third and
last, and first + middle + last: {0_1,3_4,6_7} at 8)."""

from __future__ import annotations

from pathlib import Path

from figures.base import FigureReport
from figures.cells import Cell, Link, links_key
from figures.measured import MeasuredFigure
from figures.table import bar_chart_report, gather

DELAY = 0.06


def group_name(cell: Cell) -> str:
    """``links 0-1 + 2-3``."""
    return "links " + " + ".join(f"{a}-{b}" for a, b in cell.links)


def link_sets(stages: int) -> list[tuple[Link, ...]]:
    """The paper's multi-link sets for a pipeline of ``stages`` (at least 3)."""
    last = (stages - 2, stages - 1)
    sets = [((0, 1), (1, 2))]
    if stages >= 8:
        mid = stages // 2 - 1
        sets += [((0, 1), (2, 3)), ((0, 1), last), ((0, 1), (mid, mid + 1), last)]
    elif stages >= 4:
        sets.append(((0, 1), last))
    return sets if stages >= 3 else []


class Fig17(MeasuredFigure):
    name = "fig17"
    title = "Multiple slow links at 60 ms"

    def link_sets(self, stages: int) -> list[tuple[Link, ...]]:
        return link_sets(stages)

    def delays(self, quick: bool) -> tuple[float, ...]:
        return (DELAY,)

    def plot(self, results_root: Path, cells: list[Cell], reference: Path | None = None) -> FigureReport:
        data = gather(results_root, cells, reference)
        faulty = [c for c in cells if not c.healthy]
        groups = list(dict.fromkeys(group_name(c) for c in faulty))
        methods = list(dict.fromkeys(c.method for c in cells))
        sets = ", ".join(dict.fromkeys(links_key(c.links) for c in faulty))
        notes = [*data.notes(), f"slow links: {sets}"]
        return bar_chart_report(self, results_root, data, groups, group_name, methods, 5.0, notes)


FIGURE = Fig17()
