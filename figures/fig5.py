"""Fig 5: fig 4's ZB schedule replayed with 10 and 20 ms on link 0-1 (T = 400 and 440 ms):
the healthy plan does not adapt, so the delay cascades into bubbles on every stage."""

from __future__ import annotations

from pathlib import Path

from figures.base import FigureReport, Progress
from figures.fig4 import COST_MS, MICROBATCHES, STAGES
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

DELAYS_MS = (10.0, 20.0)


class Fig5(SimulatedFigure):
    name = "fig5"
    title = "ZB replayed with a slow link 0-1"

    def compute(
        self, fig_dir: Path, quick: bool, progress: Progress | None = None, extras: bool = False
    ) -> None:
        """Replays the healthy ZB plan (zb plans healthy) under each delay on link 0-1."""
        runs = []
        for i, c in enumerate(DELAYS_MS):
            delays = (c,) + (0.0,) * (STAGES - 2)
            result = simulate_uniform("zb", STAGES, MICROBATCHES, COST_MS, delays)
            runs.append(run_json(f"ZB, {c:g} ms on link 0-1", delays, result))
            if progress:
                progress(i + 1, len(DELAYS_MS))
        write_data(fig_dir, self.name, {"runs": runs})

    def plot(self, results_root: Path, reference: Path | None = None) -> FigureReport:
        runs = read_data(results_root, self.name)["runs"]
        plt = pyplot()
        fig, axes = plt.subplots(len(runs), 1, figsize=(10, 2.4 * len(runs)), sharex=True)
        for ax, run in zip(axes, runs):
            draw_iteration(ax, run["ops"], STAGES, legend=ax is axes[-1])
            ax.set_title(f"{run['label']}: T = {run['iteration_time_ms']:g} ms, "
                         f"bubble rate {run['bubble_rate'] * 100:.1f}%", fontsize=9)
        longest = max(r["iteration_time_ms"] for r in runs)
        for ax in axes:
            ax.set_xlim(0, longest * 1.01)
        axes[-1].set_xlabel("time (ms)")
        files = save(fig, Path(results_root) / self.name, self.name)
        cells = [cell_json("zb", r["delays_ms"], r["iteration_time_ms"]) for r in runs]
        notes = ["the healthy ZB order replayed under the delay (ZB does not adapt); "
                 "the paper's Fig. 5: T = 400, 440 ms"]
        return report(self.name, files, [row(r) for r in runs], cells, notes)


FIGURE = Fig5()
