"""Fig 4: the ideal ZB timeline, S=4, N=12, every op 10 ms (T = 390 ms)."""

from __future__ import annotations

from pathlib import Path

from figures.base import FigureReport, Progress
from figures.simulated import (
    SimulatedFigure,
    cell_json,
    read_data,
    report,
    row,
    run_json,
    simulate_uniform,
    write_data,
)
from figures.style import pyplot, save
from figures.timeline import draw_iteration

STAGES, MICROBATCHES, COST_MS = 4, 12, 10.0


class Fig4(SimulatedFigure):
    name = "fig4"
    title = "Ideal ZB schedule (S=4, N=12, 10 ms ops)"

    def compute(
        self, fig_dir: Path, quick: bool, progress: Progress | None = None, extras: bool = False
    ) -> None:
        """Simulates the healthy ZB schedule into the data file."""
        delays = (0.0,) * (STAGES - 1)
        result = simulate_uniform("zb", STAGES, MICROBATCHES, COST_MS, delays)
        write_data(fig_dir, self.name, {"runs": [run_json("ZB, healthy", delays, result)]})
        if progress:
            progress(1, 1)

    def plot(self, results_root: Path, reference: Path | None = None) -> FigureReport:
        run = read_data(results_root, self.name)["runs"][0]
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(10, 2.6))
        draw_iteration(ax, run["ops"], STAGES)
        ax.set_xlabel("time (ms)")
        ax.set_title(f"{self.title}: T = {run['iteration_time_ms']:g} ms, "
                     f"bubble rate {run['bubble_rate'] * 100:.1f}%", fontsize=9)
        files = save(fig, Path(results_root) / self.name, self.name)
        notes = [f"warm-up forwards per stage {run['warmup']} (the paper's Fig. 4: 7,5,3,1)"]
        cells = [cell_json("zb", run["delays_ms"], run["iteration_time_ms"])]
        return report(self.name, files, [row(run)], cells, notes)


FIGURE = Fig4()
