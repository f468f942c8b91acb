"""Fig 8: S=2, N=30, 10 ms ops. Greedy schedules planned for delays 0..20 ms (Delta = 2..6
warm-up forwards between the stages) replayed under c = 0..52 ms: the accumulated delay
(T(c) - T(0) of the same schedule) and the bubble rate. A schedule absorbs c up to about
(Delta - 1) x tF; past that the delay accumulates per micro-batch."""

from __future__ import annotations

from pathlib import Path

from figures.base import FigureReport, Progress
from figures.simulated import SimulatedFigure, read_data, report, write_data
from figures.style import legend, pyplot, save

STAGES, MICROBATCHES, COST_MS = 2, 30, 10.0
PLAN_DELAYS_MS = (0.0, 5.0, 10.0, 15.0, 20.0)
C_MS = tuple(float(c) for c in range(0, 53))
QUICK_C_MS = tuple(float(c) for c in range(0, 53, 4))
_COLORS = ("#0072B2", "#009E73", "#E69F00", "#CC79A7", "#D55E00")


class Fig8(SimulatedFigure):
    name = "fig8"
    title = "Accumulated delay and bubble rate vs link delay (S=2, N=30)"
    estimate_s = 2.0

    def compute(
        self, fig_dir: Path, quick: bool, progress: Progress | None = None, extras: bool = False
    ) -> None:
        from engine.planner.costs import StageCosts
        from engine.planner.generators import generate
        from engine.planner.simulate import simulate

        costs = StageCosts.uniform(STAGES, COST_MS, COST_MS, COST_MS)
        cs = QUICK_C_MS if quick else C_MS
        series = []
        for i, plan in enumerate(PLAN_DELAYS_MS):
            schedule = generate("greedy", STAGES, MICROBATCHES, costs, plan_delays=(plan,))
            healthy = simulate(schedule, costs, (0.0,))
            runs = [simulate(schedule, costs, (c,)) for c in cs]
            series.append({
                "plan_delay_ms": plan,
                "delta": healthy.delta[0],
                "warmup": healthy.warmup,
                "healthy_time_ms": healthy.iteration_time,
                "c_ms": list(cs),
                "time_ms": [r.iteration_time for r in runs],
                "accumulated_ms": [r.iteration_time - healthy.iteration_time for r in runs],
                "bubble_rate": [r.bubble_rate for r in runs],
            })
            if progress:
                progress(i + 1, len(PLAN_DELAYS_MS))
        write_data(fig_dir, self.name, {"series": series})

    def plot(self, results_root: Path, reference: Path | None = None) -> FigureReport:
        series = read_data(results_root, self.name)["series"]
        plt = pyplot()
        fig, (ax_d, ax_b) = plt.subplots(1, 2, figsize=(8.4, 3.2))
        for s, color in zip(series, _COLORS):
            lbl = f"Delta = {s['delta']} (planned for {s['plan_delay_ms']:g} ms)"
            ax_d.plot(s["c_ms"], s["accumulated_ms"], color=color, label=lbl)
            ax_b.plot(s["c_ms"], [b * 100 for b in s["bubble_rate"]], color=color, label=lbl)
        ax_d.set_xlabel("link delay c (ms); tF = 10 ms")
        ax_d.set_ylabel("accumulated delay T(c) - T(0) (ms)")
        ax_b.set_xlabel("link delay c (ms); tF = 10 ms")
        ax_b.set_ylabel("bubble rate (%)")
        legend(ax_d, fontsize=6)
        fig.suptitle(self.title, fontsize=9)
        files = save(fig, Path(results_root) / self.name, self.name)
        rows = []
        for s in series:
            knee = _knee(s["c_ms"], s["accumulated_ms"])
            rows.append([s["delta"], f"{s['plan_delay_ms']:g}", " ".join(map(str, s["warmup"])),
                         f"{s['healthy_time_ms']:g}", f"{knee:g}" if knee is not None else "n/a"])
        cells = [
            {"method": f"greedy-delta{s['delta']}", "links": "0_1", "delay_s": c / 1000.0,
             "iteration_time_s": t / 1000.0, "std_s": 0.0, "status": "simulated"}
            for s in series for c, t in zip(s["c_ms"], s["time_ms"])
        ]
        notes = ["knee = the largest c whose accumulated delay is still <= c (absorbed: a one-off c)"]
        columns = ["Delta", "planned for (ms)", "warm-up", "T(0) (ms)", "knee c (ms)"]
        return report(self.name, files, rows, cells, notes, columns)


def _knee(cs: list[float], accumulated: list[float]) -> float | None:
    """The largest c up to which every accumulated delay stayed <= c (+ rounding)."""
    knee = None
    for c, a in zip(cs, accumulated):
        if a > c + 1e-6:
            break
        knee = c
    return knee


FIGURE = Fig8()
