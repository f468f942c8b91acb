"""sim-compare: simulated iteration time vs the delay on link 2-3 (S=4, N=30, 10 ms ops) for
ZB (the healthy plan replayed), 1F1B, and PipeMorph (re-planned for the delay)."""

from __future__ import annotations

from pathlib import Path

from figures.base import FigureReport, Progress
from figures.simulated import SimulatedFigure, read_data, report, simulate_uniform, write_data
from figures.style import METHOD_COLORS, METHOD_MARKERS, label, legend, pyplot, save

STAGES, MICROBATCHES, COST_MS = 4, 30, 10.0
SLOW_LINK = 2
C_MS = tuple(float(c) for c in range(0, 55, 2))
QUICK_C_MS = tuple(float(c) for c in range(0, 55, 6))
METHODS = ("1f1b", "zb", "pipemorph")


def _delays(c: float) -> tuple[float, ...]:
    return tuple(c if i == SLOW_LINK else 0.0 for i in range(STAGES - 1))


class SimCompare(SimulatedFigure):
    name = "sim-compare"
    title = "Simulated iteration time vs delay on link 2-3 (S=4, N=30, 10 ms ops)"
    estimate_s = 3.0

    def compute(
        self, fig_dir: Path, quick: bool, progress: Progress | None = None, extras: bool = False
    ) -> None:
        """Per delay: 1F1B and ZB replay their healthy plans, PipeMorph re-plans for it."""
        cs = QUICK_C_MS if quick else C_MS
        times: dict[str, list[float]] = {m: [] for m in METHODS}
        warmups: list[list[int]] = []
        for i, c in enumerate(cs):
            results = {m: simulate_uniform(m, STAGES, MICROBATCHES, COST_MS, _delays(c)) for m in METHODS}
            for m, result in results.items():
                times[m].append(result.iteration_time)
            warmups.append(results["pipemorph"].warmup)
            if progress:
                progress(i + 1, len(cs))
        write_data(fig_dir, self.name, {"c_ms": list(cs), "time_ms": times, "pipemorph_warmup": warmups})

    def plot(self, results_root: Path, reference: Path | None = None) -> FigureReport:
        data = read_data(results_root, self.name)
        cs = data["c_ms"]
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.2, 3.4))
        for m in METHODS:
            ax.plot(cs, data["time_ms"][m], color=METHOD_COLORS[m], marker=METHOD_MARKERS[m],
                    markersize=3, label=label(m))
        ax.set_xlabel("delay on link 2-3 (ms); tF = 10 ms")
        ax.set_ylabel("iteration time (ms)")
        ax.set_ylim(bottom=0)
        ax.set_title(self.title, fontsize=8)
        legend(ax, fontsize=7)
        files = save(fig, Path(results_root) / self.name, self.name)
        rows, cells = [], []
        for i, c in enumerate(cs):
            t = {m: data["time_ms"][m][i] for m in METHODS}
            rows.append([f"{c:g}", *(f"{t[m]:g}" for m in METHODS), f"{t['zb'] / t['pipemorph']:.2f}x",
                         " ".join(map(str, data["pipemorph_warmup"][i]))])
            for m in METHODS:
                cells.append({"method": m, "links": "2_3" if c else "none", "delay_s": c / 1000.0,
                              "iteration_time_s": t[m] / 1000.0, "std_s": 0.0, "status": "simulated"})
        columns = ["c (ms)", *(f"{label(m)} (ms)" for m in METHODS),
                   "PipeMorph speedup vs ZB", "PipeMorph warm-up"]
        notes = ["ZB and 1F1B replay their healthy plans; "
                 "PipeMorph re-plans with the adaptation rule for the true delay"]
        return report(self.name, files, rows, cells, notes, columns)


FIGURE = SimCompare()
