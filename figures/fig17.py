"""Fig 17: several slow links at once ("0_1,1_2" and "0_1,2_3" at 60 ms), 4 methods."""

from __future__ import annotations

from pathlib import Path

from figures.base import FigureReport, Progress
from figures.cells import Cell, links_key
from figures.measured import estimate_seconds, make_cell
from figures.style import grouped_bars, legend, pyplot, save
from figures.table import build_report, gather

METHODS = ("1f1b", "zb", "pipemorph-cpu", "pipemorph")
LINK_SETS = (((0, 1), (1, 2)), ((0, 1), (2, 3)))
DELAY = 0.06


def group_name(links: tuple[tuple[int, int], ...]) -> str:
    """``links 0-1 + 2-3``."""
    return "links " + " + ".join(f"{a}-{b}" for a, b in links)


class Fig17:
    name = "fig17"
    title = "Multiple slow links at 60 ms"
    kind = "measured"

    def cells(self, quick: bool) -> list[Cell]:
        return [make_cell(self.name, m, links, DELAY, quick) for links in LINK_SETS for m in METHODS]

    def estimate_seconds(self, quick: bool) -> float:
        return estimate_seconds(self.cells(quick))

    def compute(self, fig_dir: Path, quick: bool, progress: Progress | None = None) -> None:
        return None

    def plot(self, results_root: Path, reference: Path | None = None) -> FigureReport:
        data = gather(self.cells(False), self.cells(True), results_root, reference)
        groups = [group_name(links) for links in LINK_SETS]
        values, ref = {}, {}
        for c in data.comparisons:
            key = (group_name(c.result.cell.links), c.result.cell.method)
            values[key] = (c.result.iteration_time_s, c.result.std_s)
            ref[key] = data.scaled_reference(c)
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.0, 3.4))
        grouped_bars(ax, groups, list(METHODS), values, ref)
        ax.set_ylabel("iteration time (s)")
        ax.set_title(f"{self.title} ({data.tf_text})", fontsize=9)
        legend(ax, fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.14))
        out_dir = results_root / self.name
        files = save(fig, out_dir, self.name)
        notes = [*data.notes(), f"slow links: {', '.join(links_key(ls) for ls in LINK_SETS)}"]
        return build_report(self.name, out_dir, files, data.comparisons, notes)


FIGURE = Fig17()
