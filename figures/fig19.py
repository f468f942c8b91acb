"""Fig 19: the heuristic vs the ILP optimum (simulated).

Instances as PAPER.md 3 draws them (``engine.planner.instances``): (S, N) in
{(3,6), (4,12), (6,18), (8,32)} x granularity b in {10,15,20,25,30} x 5 seeded repeats,
costs in [b, 2b) with per-stage noise, c ~ U(0, 20) ms on every link. Per instance the
``pipemorph`` heuristic (and the improved ``pipemorph+``) is timed and replayed, and the ILP
is solved with a time limit. The figure, as the artifact draws it: (a) the heuristics' gap
to the ILP's schedule against the granularity b, one line per (S, N), averaged over the
repeats; (b) the runtimes per (S, N). ``compute`` writes ``fig19.data.json``; ``plot`` draws
from it.

The ILP starts from the better heuristic and the windows' lower bound, so HiGHS proves every
instance of the grid optimal in well under a second (the whole default figure takes seconds).
The extra line "MILP from pipemorph alone" (the MILP warm-started from ``pipemorph`` only, the
artifact's setting, which must search and mostly stops at the time limit) costs up to the
time limit per instance, about 9 minutes for the grid: it is computed only with
``extras=True`` (``pmctl run fig19 --extras``); without it the plot says it was left out.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from figures.base import FigureReport, Progress
from figures.cells import Cell
from figures.simulated import SimulatedFigure, read_data, report, write_data
from figures.style import METHOD_COLORS, pyplot, save

HEURISTICS = ("pipemorph", "pipemorph+")
_COLORS = {"pipemorph": METHOD_COLORS["pipemorph"], "pipemorph+": "#8B3A00", "ilp": "#555555"}
_SIZE_COLORS = ["#0072B2", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#D55E00"]
_HEURISTIC_STYLES = ("-", "--")  # pipemorph, pipemorph+ in panel (a)
# Mean wall time per instance of a full run on a 2-core machine, rounded up for load: the
# heuristics + the ILP (measured 0.01-0.12 s: all 100 instances proven, 4 s in all) and,
# with extras, the MILP from pipemorph alone (30 s limit, 17 of 100 stop there; 558 s).
_SECONDS_PER_INSTANCE = {(3, 6): 0.05, (4, 12): 0.05, (6, 18): 0.1, (8, 32): 0.3}
_EXTRA_SECONDS_PER_INSTANCE = {(3, 6): 0.1, (4, 12): 5.6, (6, 18): 5.0, (8, 32): 17.0}
# The lines only ``extras`` computes: the data file's row-key prefix -> the legend's words.
EXTRA_LINES = {"search": "MILP from pipemorph alone"}
EXTRAS_HINT = "pmctl run fig19 --extras"


@dataclass(frozen=True)
class Fig19Config:
    """The instance grid and the ILP's time limit of one run."""

    sizes: tuple[tuple[int, int], ...]
    granularities: tuple[int, ...]
    repeats: int
    time_limit_s: float


FULL = Fig19Config(((3, 6), (4, 12), (6, 18), (8, 32)), (10, 15, 20, 25, 30), 5, 30.0)
QUICK = Fig19Config(((3, 6), (4, 12), (6, 18), (8, 32)), (10, 30), 1, 4.0)


def solve_instance(
    S: int, N: int, b: int, seed: int, time_limit_s: float, extras: bool = True
) -> dict[str, Any]:
    """One instance: the heuristics' makespans and runtimes, and the ILP's result; with
    ``extras`` also the MILP warm-started from pipemorph alone (the ``search_*`` keys, up to
    ``time_limit_s`` more). ``Fig19.compute`` passes its own ``extras`` (default off)."""
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
    if not extras:
        return row
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


def has_extras(instances: list[dict[str, Any]]) -> bool:
    """Whether every instance has the extra lines (data computed with ``extras``)."""
    return bool(instances) and all("search_makespan" in r for r in instances)


def summarize(instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (S, N): counts, mean/max gap of each heuristic to the ILP (and its mean per
    granularity, ``by_granularity``), runtimes; the ``search_*`` fields only when every
    instance has the extra line (``has_extras``)."""
    extras = has_extras(instances)
    out = []
    for S, N in sorted({(r["S"], r["N"]) for r in instances}):
        rows = [r for r in instances if (r["S"], r["N"]) == (S, N)]
        s: dict[str, Any] = {
            "S": S, "N": N, "instances": len(rows),
            "proven": sum(bool(r["ilp_proven"]) for r in rows),
            "ilp_solve_s_mean": statistics.fmean(r["ilp_solve_s"] for r in rows),
            "ilp_bound_gap_pct_mean": statistics.fmean(
                gap_pct(r["ilp_makespan"], r["ilp_bound"]) for r in rows
            ),
        }
        if extras:
            s.update(
                search_solve_s_mean=statistics.fmean(r["search_solve_s"] for r in rows),
                search_proven=sum(bool(r["search_proven"]) for r in rows),
                search_gap_pct_mean=statistics.fmean(
                    gap_pct(r["search_makespan"], r["ilp_makespan"]) for r in rows
                ),
            )
        for name in HEURISTICS:
            gaps = [gap_pct(r[f"{name}_makespan"], r["ilp_makespan"]) for r in rows]
            s[f"{name}_gap_pct_mean"] = statistics.fmean(gaps)
            s[f"{name}_gap_pct_max"] = max(gaps)
            s[f"{name}_runtime_ms_mean"] = statistics.fmean(r[f"{name}_runtime_ms"] for r in rows)
        s["by_granularity"] = [
            _gaps_at(b, [r for r in rows if r["b"] == b]) for b in sorted({r["b"] for r in rows})
        ]
        out.append(s)
    return out


def _gaps_at(b: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One point of panel (a): each heuristic's mean gap over the repeats at granularity b."""
    point: dict[str, Any] = {"b": b, "instances": len(rows)}
    for name in HEURISTICS:
        point[f"{name}_gap_pct_mean"] = statistics.fmean(
            gap_pct(r[f"{name}_makespan"], r["ilp_makespan"]) for r in rows
        )
    return point


class Fig19(SimulatedFigure):
    name = "fig19"
    title = "Heuristic vs ILP: gap to the ILP and runtime"

    def estimate_seconds(self, base: Cell, quick: bool, extras: bool = False) -> float:
        """Per instance size: the measured solve time (with ``extras`` plus the MILP from
        pipemorph alone), each capped by the ILP time limit (``base`` plays no part)."""
        cfg = QUICK if quick else FULL
        per_size = len(cfg.granularities) * cfg.repeats
        worst = cfg.time_limit_s + 1
        total = 0.0
        for size in cfg.sizes:
            total += min(_SECONDS_PER_INSTANCE.get(size, worst), worst)
            if extras:
                total += min(_EXTRA_SECONDS_PER_INSTANCE.get(size, worst), worst)
        return per_size * total

    def compute(
        self, fig_dir: Path, quick: bool, progress: Progress | None = None, extras: bool = False
    ) -> None:
        """The grid (``quick``: the small one); ``extras`` adds the MILP from pipemorph
        alone (up to the time limit per instance: about 9 minutes for the full grid)."""
        self.compute_config(fig_dir, QUICK if quick else FULL, progress, extras)

    def compute_config(
        self, fig_dir: Path, cfg: Fig19Config, progress: Progress | None = None,
        extras: bool = False,
    ) -> None:
        """``compute`` for an explicit grid (tests and benchmarks use small ones)."""
        grid = [
            (S, N, b, seed)
            for S, N in cfg.sizes for b in cfg.granularities for seed in range(cfg.repeats)
        ]
        instances = []
        for i, (S, N, b, seed) in enumerate(grid):
            instances.append(solve_instance(S, N, b, seed, cfg.time_limit_s, extras))
            if progress:
                progress(i + 1, len(grid))
        write_data(fig_dir, self.name, {
            "time_limit_s": cfg.time_limit_s,
            "heuristics": list(HEURISTICS),
            "extras": extras,
            "left_out": [] if extras else list(EXTRA_LINES.values()),
            "instances": instances,
        })

    def plot(self, results_root: Path, reference: Path | None = None) -> FigureReport:
        data = read_data(results_root, self.name)
        summary = summarize(data["instances"])
        extras = has_extras(data["instances"])
        plt = pyplot()
        fig, (ax_gap, ax_time) = plt.subplots(1, 2, figsize=(8.4, 3.2))
        labels = [f"({s['S']},{s['N']})" for s in summary]
        # (a) as the artifact draws it: gap vs granularity, one line per (S, N), averaged
        # over the repeats; pipemorph solid, pipemorph+ dashed in the same colour.
        for i, s in enumerate(summary):
            color = _SIZE_COLORS[i % len(_SIZE_COLORS)]
            bs = [g["b"] for g in s["by_granularity"]]
            for name, style in zip(HEURISTICS, _HEURISTIC_STYLES):
                ax_gap.plot(bs, [g[f"{name}_gap_pct_mean"] for g in s["by_granularity"]],
                            color=color, linestyle=style, marker="o" if style == "-" else "x",
                            markersize=3, label=f"({s['S']},{s['N']})" if style == "-" else None)
        for name, style in zip(HEURISTICS, _HEURISTIC_STYLES):  # legend keys, nothing drawn
            ax_gap.plot([], [], color="black", linestyle=style, label=name)
        ax_gap.set_xticks(sorted({g["b"] for s in summary for g in s["by_granularity"]}))
        ax_gap.set_xlabel("granularity b (op costs in [b, 2b) ms)")
        ax_gap.set_ylabel("gap to the ILP schedule (%)")
        top = max(ax_gap.get_ylim()[1], 0.1)
        ax_gap.set_ylim(-0.03 * top, top)  # lines at 0 (optimal) stay visible
        ax_gap.legend(fontsize=6, ncol=2)
        ax_gap.set_title("(a) heuristic vs ILP makespan (mean over repeats)", fontsize=9)
        for name in HEURISTICS:
            ax_time.plot(labels, [s[f"{name}_runtime_ms_mean"] / 1e3 for s in summary],
                         marker="o", color=_COLORS[name], label=name)
        ax_time.plot(labels, [s["ilp_solve_s_mean"] for s in summary], marker="s",
                     color=_COLORS["ilp"], label="ILP (bound + best heuristic start)")
        if extras:
            ax_time.plot(labels, [s["search_solve_s_mean"] for s in summary], marker="^",
                         color=_COLORS["ilp"], linestyle="--",
                         label=f"{EXTRA_LINES['search']} (limit {data['time_limit_s']:g} s)")
        ax_time.set_yscale("log")
        # Without extras the panel says what it lacks (the xlabel keeps clear of the lines).
        ax_time.set_xlabel(
            "(S, N)" if extras else
            f"(S, N)\nleft out: {_extra_names()}\n(add it with `{EXTRAS_HINT}`)",
            fontsize=9 if extras else 7,
        )
        ax_time.set_ylabel("runtime (s, log)")
        ax_time.legend(fontsize=7)
        ax_time.set_title("(b) runtime per instance (mean)", fontsize=9)
        fig.suptitle(self.title, fontsize=9)
        files = save(fig, Path(results_root) / self.name, self.name)
        rows = [_row(s, extras) for s in summary]
        solvers = sorted({str(r.get("ilp_solver", "?")) for r in data["instances"]})
        notes = [
            (
                "PM = pipemorph, PM+ = pipemorph+; gap = (heuristic T - ILP T) / ILP T, the "
                "ILP T being its best schedule (optimal where proven)"
            ),
            (
                f"ILP proven optimal on {sum(s['proven'] for s in summary)} of "
                f"{sum(s['instances'] for s in summary)} instances ({', '.join(solvers)}, "
                f"limit {data['time_limit_s']:g} s); "
                f"{sum(bool(r.get('ilp_searched')) for r in data['instances'])} needed the "
                "MILP search, the others met the one-machine/critical-path bound at once"
            ),
        ]
        if extras:
            notes.append(
                "MILP from PM = the MILP warm-started from pipemorph alone (it must search "
                "wherever that is not provably optimal); proven optimal on "
                f"{sum(s['search_proven'] for s in summary)} of "
                f"{sum(s['instances'] for s in summary)}; gap = its T vs the ILP's"
            )
        else:
            notes.append(
                f"left out: {_extra_names()} (the MILP warm-started from pipemorph alone, up "
                f"to the ILP limit per instance, minutes in all); `{EXTRAS_HINT}` adds it"
            )
        columns = COLUMNS + ([EXTRA_COLUMN] if extras else [])
        return report(self.name, files, rows, summary, notes, columns)


def _extra_names() -> str:
    """The extra lines, quoted, for the "left out" notes."""
    return ", ".join(f'"{name}"' for name in EXTRA_LINES.values())


COLUMNS = [
    "S,N", "ILP proven", "PM gap % mean/max", "PM+ gap % mean/max", "PM ms", "PM+ ms", "ILP s",
]
EXTRA_COLUMN = "MILP from PM: proven / s / gap %"


def _row(s: dict[str, Any], extras: bool) -> list[Any]:
    def pct(v: float) -> str:
        return f"{v:.2f}" if math.isfinite(v) else "n/a"

    out: list[Any] = [
        f"{s['S']},{s['N']}", f"{s['proven']}/{s['instances']}",
        f"{pct(s['pipemorph_gap_pct_mean'])} / {pct(s['pipemorph_gap_pct_max'])}",
        f"{pct(s['pipemorph+_gap_pct_mean'])} / {pct(s['pipemorph+_gap_pct_max'])}",
        f"{s['pipemorph_runtime_ms_mean']:.2f}", f"{s['pipemorph+_runtime_ms_mean']:.1f}",
        f"{s['ilp_solve_s_mean']:.2f}",
    ]
    if extras:
        out.append(
            f"{s['search_proven']}/{s['instances']} / {s['search_solve_s_mean']:.2f} / "
            f"{pct(s['search_gap_pct_mean'])}"
        )
    return out


FIGURE = Fig19()
