"""Fig 5: fig 4's ZB schedule replayed with 10 and 20 ms on link 0-1 (T = 400 and 440 ms):
the healthy plan does not adapt, so the delay cascades into bubbles on every stage."""

from __future__ import annotations

from pathlib import Path

from figures.base import FigureReport, Progress
from figures.cells import Cell
from figures.fig4 import COST_MS, MICROBATCHES, STAGES
from figures.simulated import cell_json, read_data, report, row, run_json, write_data
from figures.style import pyplot, save
from figures.timeline import draw_iteration

DELAYS_MS = (10.0, 20.0)


class Fig5:
    name = "fig5"
    title = "ZB replayed with a slow link 0-1"
    kind = "simulated"

    def cells(self, quick: bool) -> list[Cell]:
        return []

    def estimate_seconds(self, quick: bool) -> float:
        return 1.0

    def compute(self, fig_dir: Path, quick: bool, progress: Progress | None = None) -> None:
        from engine.planner.costs import StageCosts
        from engine.planner.generators import generate
        from engine.planner.simulate import simulate

        costs = StageCosts.uniform(STAGES, COST_MS, COST_MS, COST_MS)
        schedule = generate("zb", STAGES, MICROBATCHES, costs)
        runs = []
        for i, c in enumerate(DELAYS_MS):
            delays = (c,) + (0.0,) * (STAGES - 2)
            runs.append(run_json(f"ZB, {c:g} ms on link 0-1", delays, simulate(schedule, costs, delays)))
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
                 "PAPER.md: T = 400, 440 ms"]
        return report(self.name, files, [row(r) for r in runs], cells, notes)


FIGURE = Fig5()
