"""Fig 19's instances and numbers, without plotting: the grid (``FULL``, ``QUICK``), one
instance solved (``solve_instance``: the heuristics timed and replayed, the ILP with a time
limit, with ``extras`` the MILP warm-started from pipemorph alone), the per-(S, N)
summary the plot draws (``summarize``, ``gap_series``) and the artifact's own results
(``read_artifact``, ``artifact_series``). ``figures.fig19`` is the figure.
"""

from __future__ import annotations

import csv
import io
import math
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEURISTICS = ("pipemorph", "pipemorph+")


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


# The artifact's own fig19 results, relative to an artifact tree (``pmctl plot --reference``).
ARTIFACT_CSV = ("fig19", "result.csv")
_ARTIFACT_COLUMNS = ("s", "n", "base", "ilp_t", "ilp_st", "ilp_cost", "our_t", "our_st", "our_cost")


def read_artifact(root: Path) -> list[dict[str, float]] | None:
    """The rows of the artifact's ``<root>/fig19/result.csv`` (columns s, n, base, ilp_t,
    ilp_st, ilp_cost, our_t, our_st, our_cost; costs in seconds), or None when it is absent;
    ``ArtifactTreeError`` (one line) for a file that is not that table: not UTF-8 text, a
    missing column, a value that is not a finite number, s, n or base not a whole number >= 1,
    or an ILP makespan ``ilp_t`` <= 0 (the gap divides by it)."""
    from figures.reference import ArtifactTreeError

    path = Path(root).joinpath(*ARTIFACT_CSV)
    if not path.is_file():
        return None
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactTreeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}): "
                                "expected the artifact's CSV") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    try:
        missing = set(_ARTIFACT_COLUMNS) - set(reader.fieldnames or ())
        rows = [] if missing else [_artifact_row(row) for row in reader]
    except (csv.Error, ValueError) as exc:
        raise ArtifactTreeError(f"{path}: line {reader.line_num}: {exc}") from None
    if missing:
        raise ArtifactTreeError(f"{path}: no column {', '.join(sorted(missing))} (expected "
                                f"{', '.join(_ARTIFACT_COLUMNS)})")
    return rows


def _artifact_row(row: dict[str, str]) -> dict[str, float]:
    """One row of the artifact's table as numbers; ValueError (what is wrong) otherwise."""
    try:
        out = {k: float(row[k]) for k in _ARTIFACT_COLUMNS}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a number ({exc})") from None
    bad = [k for k, v in out.items() if not math.isfinite(v)]
    bad += [k for k in ("s", "n", "base") if k not in bad and (out[k] < 1 or out[k] % 1)]
    if bad:
        raise ValueError(f"{', '.join(bad)} = {', '.join(row[k] for k in bad)}: expected finite "
                         "numbers, s, n and base whole numbers >= 1")
    if out["ilp_t"] <= 0:
        raise ValueError(f"ilp_t = {row['ilp_t']}: the ILP's makespan must be > 0")
    return out


def artifact_series(rows: list[dict[str, float]]) -> list[dict[str, Any]]:
    """Per (S, N) of the artifact's rows (as ``read_artifact`` checked them): its heuristic's gap (our_t - ilp_t) / ilp_t in %
    per granularity, the mean over its repeats (what its fig19 draws), and its mean
    runtimes (the heuristic's in ms, the ILP's in s)."""
    out = []
    for S, N in sorted({(int(r["s"]), int(r["n"])) for r in rows}):
        mine = [r for r in rows if (int(r["s"]), int(r["n"])) == (S, N)]
        points = []
        for b in sorted({int(r["base"]) for r in mine}):
            at = [r for r in mine if int(r["base"]) == b]
            points.append({"b": b, "repeats": len(at), "gap_pct_mean": statistics.fmean(
                gap_pct(r["our_t"], r["ilp_t"]) for r in at)})
        out.append({
            "S": S, "N": N, "points": points,
            "heuristic_runtime_ms_mean": statistics.fmean(r["our_cost"] for r in mine) * 1e3,
            "ilp_solve_s_mean": statistics.fmean(r["ilp_cost"] for r in mine),
        })
    return out


def gap_series(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Panel (a)'s lines from ``summarize``: per (S, N), each heuristic's mean gap to the
    ILP per granularity."""
    return [
        {"S": s["S"], "N": s["N"], "points": [
            {"b": g["b"], "instances": g["instances"],
             **{f"{name}_gap_pct_mean": g[f"{name}_gap_pct_mean"] for name in HEURISTICS}}
            for g in s["by_granularity"]
        ]}
        for s in summary
    ]
