"""Fig 19: the heuristic vs the ILP optimum (simulated).

Instances as PAPER.md 3 draws them (``engine.planner.instances``): (S, N) in
{(3,6), (4,12), (6,18), (8,32)} x granularity b in {10,15,20,25,30} x 5 seeded repeats,
costs in [b, 2b) with per-stage noise, c ~ U(0, 20) ms on every link. Per instance the
``pipemorph`` heuristic (and the improved ``pipemorph+``) is timed and replayed, and the ILP
is solved with a time limit; the figure shows the heuristics' gap to the ILP's schedule and
the runtimes. ``compute`` writes ``fig19.data.json``; ``plot`` draws from it.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from figures.cells import Cell
from figures.base import FigureReport, Progress
from figures.simulated import SimulatedFigure, read_data, report, write_data
from figures.style import METHOD_COLORS, pyplot, save

HEURISTICS = ("pipemorph", "pipemorph+")
_COLORS = {"pipemorph": METHOD_COLORS["pipemorph"], "pipemorph+": "#8B3A00", "ilp": "#555555"}
# Mean wall time per instance (heuristics + both ILP runs, 30 s limit) of a full run on a
# loaded 2-core machine (689 s in all); an instance takes at most about twice the limit.
_SECONDS_PER_INSTANCE = {(3, 6): 0.1, (4, 12): 5.6, (6, 18): 5.0, (8, 32): 17.0}


@dataclass(frozen=True)
class Fig19Config:
    """The instance grid and the ILP's time limit of one run."""

    sizes: tuple[tuple[int, int], ...]
    granularities: tuple[int, ...]
    repeats: int
    time_limit_s: float


FULL = Fig19Config(((3, 6), (4, 12), (6, 18), (8, 32)), (10, 15, 20, 25, 30), 5, 30.0)
QUICK = Fig19Config(((3, 6), (4, 12), (6, 18), (8, 32)), (10, 30), 1, 4.0)


def solve_instance(S: int, N: int, b: int, seed: int, time_limit_s: float) -> dict[str, Any]:
    """One instance: the heuristics' makespans and runtimes, and the ILP's result."""
    from engine.planner.generators import generate
    from engine.planner.ilp import solve_ilp
    from engine.planner.instances import random_instance
    from engine.planner.simulate import simulate

    inst = random_instance(S, N, b, random.Random(f"fig19:{S}:{N}:{b}:{seed}"))
    row: dict[str, Any] = {
        "S": S, "N": N, "b": b, "seed": seed, "delays_ms": list(inst.delays),
        "costs_ms": inst.costs.to_json(),
    }
    plans = {}
    for name in HEURISTICS:
        t0 = time.perf_counter()
        plans[name] = generate(name, S, N, inst.costs, plan_delays=inst.delays)
        row[f"{name}_runtime_ms"] = (time.perf_counter() - t0) * 1e3
        row[f"{name}_makespan"] = simulate(plans[name], inst.costs, inst.delays).iteration_time
    ilp = solve_ilp(S, N, inst.costs, inst.delays, time_limit_s=time_limit_s)
    row.update(
        ilp_makespan=ilp.makespan, ilp_bound=ilp.lower_bound, ilp_proven=ilp.proven_optimal,
        ilp_solve_s=ilp.solve_seconds, ilp_solver=ilp.solver_name, ilp_status=ilp.status,
        ilp_searched=ilp.searched,
    )
    # The MILP on its own: started from the plain heuristic it must search wherever that
    # heuristic is not provably optimal (the artifact's ILP setting, with our model).
    own = solve_ilp(S, N, inst.costs, inst.delays, time_limit_s=time_limit_s,
                    warm_start=plans["pipemorph"])
    row.update(
        search_makespan=own.makespan, search_proven=own.proven_optimal,
        search_solve_s=own.solve_seconds, search_searched=own.searched,
    )
    return row


def gap_pct(heuristic: float, reference: float) -> float:
    """How much slower the heuristic is than ``reference``, in percent."""
    return (heuristic - reference) / reference * 100.0


def summarize(instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (S, N): counts, mean/max gap of each heuristic to the ILP, runtimes."""
    out = []
    for S, N in sorted({(r["S"], r["N"]) for r in instances}):
        rows = [r for r in instances if (r["S"], r["N"]) == (S, N)]
        s: dict[str, Any] = {
            "S": S, "N": N, "instances": len(rows),
            "proven": sum(bool(r["ilp_proven"]) for r in rows),
            "ilp_solve_s_mean": statistics.fmean(r["ilp_solve_s"] for r in rows),
            "search_solve_s_mean": statistics.fmean(r["search_solve_s"] for r in rows),
            "search_proven": sum(bool(r["search_proven"]) for r in rows),
            "search_gap_pct_mean": statistics.fmean(
                gap_pct(r["search_makespan"], r["ilp_makespan"]) for r in rows
            ),
            "ilp_bound_gap_pct_mean": statistics.fmean(
                gap_pct(r["ilp_makespan"], r["ilp_bound"]) for r in rows
            ),
        }
        for name in HEURISTICS:
            gaps = [gap_pct(r[f"{name}_makespan"], r["ilp_makespan"]) for r in rows]
            s[f"{name}_gap_pct_mean"] = statistics.fmean(gaps)
            s[f"{name}_gap_pct_max"] = max(gaps)
            s[f"{name}_runtime_ms_mean"] = statistics.fmean(r[f"{name}_runtime_ms"] for r in rows)
        out.append(s)
    return out


class Fig19(SimulatedFigure):
    name = "fig19"
    title = "Heuristic vs ILP: gap to the ILP and runtime"

    def estimate_seconds(self, base: Cell, quick: bool) -> float:
        """Per instance size: the measured solve time, capped by the ILP time limits."""
        cfg = QUICK if quick else FULL
        per_size = len(cfg.granularities) * cfg.repeats
        worst = 2 * cfg.time_limit_s + 2
        return sum(
            per_size * min(_SECONDS_PER_INSTANCE.get(size, worst), worst) for size in cfg.sizes
        )

    def compute(self, fig_dir: Path, quick: bool, progress: Progress | None = None) -> None:
        self.compute_config(fig_dir, QUICK if quick else FULL, progress)

    def compute_config(
        self, fig_dir: Path, cfg: Fig19Config, progress: Progress | None = None
    ) -> None:
        """``compute`` for an explicit grid (tests and benchmarks use small ones)."""
        grid = [
            (S, N, b, seed)
            for S, N in cfg.sizes for b in cfg.granularities for seed in range(cfg.repeats)
        ]
        instances = []
        for i, (S, N, b, seed) in enumerate(grid):
            instances.append(solve_instance(S, N, b, seed, cfg.time_limit_s))
            if progress:
                progress(i + 1, len(grid))
        write_data(fig_dir, self.name, {
            "time_limit_s": cfg.time_limit_s,
            "heuristics": list(HEURISTICS),
            "instances": instances,
        })

    def plot(self, results_root: Path, reference: Path | None = None) -> FigureReport:
        data = read_data(results_root, self.name)
        summary = summarize(data["instances"])
        plt = pyplot()
        fig, (ax_gap, ax_time) = plt.subplots(1, 2, figsize=(8.4, 3.2))
        labels = [f"({s['S']},{s['N']})" for s in summary]
        xs = range(len(summary))
        width = 0.8 / len(HEURISTICS)
        for k, name in enumerate(HEURISTICS):
            off = [x + (k - (len(HEURISTICS) - 1) / 2) * width for x in xs]
            means = [s[f"{name}_gap_pct_mean"] for s in summary]
            maxes = [s[f"{name}_gap_pct_max"] for s in summary]
            ax_gap.bar(off, means, width * 0.95, color=_COLORS[name], label=f"{name} (mean)")
            ax_gap.plot(off, maxes, linestyle="none", marker="_", markersize=10,
                        markeredgewidth=2, color="black", label="max" if k == 0 else None)
        ax_gap.set_xticks(list(xs), labels)
        ax_gap.set_xlabel("(S, N)")
        ax_gap.set_ylabel("gap to the ILP schedule (%)")
        ax_gap.set_ylim(bottom=0)
        ax_gap.legend(fontsize=7)
        ax_gap.set_title("(a) heuristic vs ILP makespan", fontsize=9)
        for name in HEURISTICS:
            ax_time.plot(labels, [s[f"{name}_runtime_ms_mean"] / 1e3 for s in summary],
                         marker="o", color=_COLORS[name], label=name)
        ax_time.plot(labels, [s["ilp_solve_s_mean"] for s in summary], marker="s",
                     color=_COLORS["ilp"], label="ILP (bound + best heuristic start)")
        ax_time.plot(labels, [s["search_solve_s_mean"] for s in summary], marker="^",
                     color=_COLORS["ilp"], linestyle="--",
                     label=f"MILP from pipemorph alone (limit {data['time_limit_s']:g} s)")
        ax_time.set_yscale("log")
        ax_time.set_xlabel("(S, N)")
        ax_time.set_ylabel("runtime (s, log)")
        ax_time.legend(fontsize=7)
        ax_time.set_title("(b) runtime per instance (mean)", fontsize=9)
        fig.suptitle(self.title, fontsize=9)
        files = save(fig, Path(results_root) / self.name, self.name)
        rows = [_row(s) for s in summary]
        notes = [
            "PM = pipemorph, PM+ = pipemorph+; gap = (heuristic T - ILP T) / ILP T, the ILP T "
            "being its best schedule (optimal where proven)",
            f"ILP proven optimal on {sum(s['proven'] for s in summary)} of "
            f"{sum(s['instances'] for s in summary)} instances; "
            f"{sum(bool(r.get('ilp_searched')) for r in data['instances'])} needed the MILP "
            "search, the others met the one-machine/critical-path bound at once",
            "MILP from PM = the MILP warm-started from pipemorph alone (it must search "
            "wherever that is not provably optimal); gap = its T vs the ILP's",
        ]
        return report(self.name, files, rows, summary, notes, COLUMNS)


COLUMNS = [
    "S,N", "ILP proven", "PM gap % mean/max", "PM+ gap % mean/max", "PM ms", "PM+ ms",
    "ILP s", "MILP from PM: proven / s / gap %",
]


def _row(s: dict[str, Any]) -> list[Any]:
    def pct(v: float) -> str:
        return f"{v:.2f}" if math.isfinite(v) else "n/a"

    return [
        f"{s['S']},{s['N']}", f"{s['proven']}/{s['instances']}",
        f"{pct(s['pipemorph_gap_pct_mean'])} / {pct(s['pipemorph_gap_pct_max'])}",
        f"{pct(s['pipemorph+_gap_pct_mean'])} / {pct(s['pipemorph+_gap_pct_max'])}",
        f"{s['pipemorph_runtime_ms_mean']:.2f}", f"{s['pipemorph+_runtime_ms_mean']:.1f}",
        f"{s['ilp_solve_s_mean']:.2f}",
        f"{s['search_proven']}/{s['instances']} / {s['search_solve_s_mean']:.2f} / "
        f"{pct(s['search_gap_pct_mean'])}",
    ]


FIGURE = Fig19()
