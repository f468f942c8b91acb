"""Fig 19: the heuristic vs the ILP optimum (simulated).

Instances as PAPER.md 3 draws them (``engine.planner.instances``): (S, N) in
{(3,6), (4,12), (6,18), (8,32)} x granularity b in {10,15,20,25,30} x 5 seeded repeats,
costs in [b, 2b) with per-stage noise, c ~ U(0, 20) ms on every link. Per instance the
``pipemorph`` heuristic (and the improved ``pipemorph+``) is timed and replayed, and the ILP
is solved with a time limit. The figure, as the artifact draws it: (a) the heuristics' gap
to the ILP's schedule against the granularity b, one line per (S, N), averaged over the
repeats; (b) the runtimes per (S, N). ``compute`` writes ``fig19.data.json``; ``plot`` draws
from it. The grid, the solving and the summary live in ``figures.fig19_solve``.

The ILP starts from the better heuristic and the windows' lower bound, so HiGHS proves every
instance of the grid optimal in well under a second (the whole default figure takes seconds).
Panel (a) overlays the artifact's own results (its ``fig19/result.csv``: the same grid, its
own random instances, its ILP stopped at 30 s mostly unproven), read at plot time from the
``--reference`` tree, by default the shared folder beside this checkout; without the file the
overlay is left out and the notes say so. ``fig19.json`` has both as ``series``.

The extra line "MILP from pipemorph alone" (the MILP warm-started from ``pipemorph`` only, the
artifact's setting, which must search and mostly stops at the time limit) costs up to the
time limit per instance, about 9 minutes for the grid: it is computed only with
``extras=True`` (``pmctl run fig19 --extras``); without it the plot says it was left out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from figures.base import FigureReport, Progress
from figures.cells import Cell
from figures.fig19_solve import (
    ARTIFACT_CSV,
    FULL,
    HEURISTICS,
    QUICK,
    Fig19Config,
    artifact_series,
    gap_series,
    has_extras,
    read_artifact,
    solve_instance,
    summarize,
)
from figures.simulated import SimulatedFigure, data_path, read_data, report, write_data
from figures.style import METHOD_COLORS, pyplot, save

# The artifact tree read when ``pmctl plot`` is given no ``--reference``: the shared folder
# beside this checkout (its data is read where it lies, never copied into the repository).
SHARED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "ae-reference"
_COLORS = {"pipemorph": METHOD_COLORS["pipemorph"], "pipemorph+": METHOD_COLORS["pipemorph+"],
           "ilp": "#555555"}
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
        """``compute`` for an explicit grid (tests and benchmarks use small ones). A run
        without ``extras`` keeps data of the same grid that has them (the default lines are
        the same numbers; the extras cost minutes)."""
        grid = [
            (S, N, b, seed)
            for S, N in cfg.sizes for b in cfg.granularities for seed in range(cfg.repeats)
        ]
        if not extras and _has_extras_for(fig_dir, self.name, cfg, grid):
            return
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
        tree = SHARED_REFERENCE if reference is None else Path(reference)
        rows = read_artifact(tree)
        artifact = artifact_series(rows) if rows else None
        sizes = sorted({(s["S"], s["N"]) for s in [*summary, *(artifact or [])]})
        color_of = {size: _SIZE_COLORS[i % len(_SIZE_COLORS)] for i, size in enumerate(sizes)}
        plt = pyplot()
        fig, (ax_gap, ax_time) = plt.subplots(1, 2, figsize=(8.4, 3.2))
        labels = [f"({s['S']},{s['N']})" for s in summary]
        # (a) as the artifact draws it: gap vs granularity, one line per (S, N), averaged
        # over the repeats; pipemorph solid, pipemorph+ dashed in the same colour, the
        # artifact's own results dotted with open markers.
        for s in summary:
            color = color_of[(s["S"], s["N"])]
            bs = [g["b"] for g in s["by_granularity"]]
            for name, style in zip(HEURISTICS, _HEURISTIC_STYLES):
                ax_gap.plot(bs, [g[f"{name}_gap_pct_mean"] for g in s["by_granularity"]],
                            color=color, linestyle=style, marker="o" if style == "-" else "x",
                            markersize=3, label=f"({s['S']},{s['N']})" if style == "-" else None)
        ours = {(s["S"], s["N"]) for s in summary}
        for a in artifact or []:
            size = (a["S"], a["N"])
            ax_gap.plot([p["b"] for p in a["points"]], [p["gap_pct_mean"] for p in a["points"]],
                        color=color_of[size], linestyle=":", marker="s", markerfacecolor="none",
                        markersize=3, linewidth=0.9, label=None if size in ours else f"({size[0]},{size[1]})")
        keys = [*zip(HEURISTICS, _HEURISTIC_STYLES), *([("artifact (pipemorph)", ":")] if artifact else [])]
        for name, style in keys:  # legend keys, nothing drawn
            ax_gap.plot([], [], color="black", linestyle=style, label=name)
        ax_gap.set_xticks(sorted({g["b"] for s in summary for g in s["by_granularity"]}
                                 | {p["b"] for a in artifact or [] for p in a["points"]}))
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
        if artifact:
            theirs = {(a["S"], a["N"]): a for a in artifact}
            mine = [theirs.get((s["S"], s["N"])) for s in summary]
            for key, scale, marker, name in (("heuristic_runtime_ms_mean", 1e-3, "o", "pipemorph"),
                                             ("ilp_solve_s_mean", 1.0, "s", "ilp")):
                ax_time.plot(labels, [a[key] * scale if a else math.nan for a in mine], marker=marker,
                             color=_COLORS[name], linestyle=":", markerfacecolor="none",
                             label=f"artifact {'ILP (30 s limit)' if name == 'ilp' else name}")
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
        table = [_row(s, extras) for s in summary]
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
        source = tree.joinpath(*ARTIFACT_CSV)
        if artifact:
            notes.append(
                f"dotted: the artifact's own results ({source}): gap (our_t - ilp_t) / ilp_t of "
                "its pipemorph heuristic, mean over its repeats, on its own random instances of "
                "the same grid; its ILP ran 30 s and is mostly unproven, so its gaps can be small "
                "or negative where ours are to a proven optimum"
            )
        else:
            notes.append(f"artifact overlay left out: no {source}")
        columns = COLUMNS + ([EXTRA_COLUMN] if extras else [])
        series = {"ours": gap_series(summary), "artifact": artifact,
                  "artifact_source": str(source) if artifact else None}
        return report(self.name, files, table, summary, notes, columns, {"series": series})


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


def _has_extras_for(fig_dir: Path, name: str, cfg: Fig19Config, grid: list[tuple[int, ...]]) -> bool:
    """Whether ``fig_dir`` holds data of exactly this grid computed with the extras."""
    path = data_path(fig_dir, name)
    if not path.is_file():
        return False
    data = json.loads(path.read_text(encoding="utf-8"))
    have = [(r["S"], r["N"], r["b"], r["seed"]) for r in data.get("instances", [])]
    return (data.get("time_limit_s") == cfg.time_limit_s and have == grid
            and has_extras(data["instances"]))
