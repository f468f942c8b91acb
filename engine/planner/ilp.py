"""The optimal schedule by MILP: minimise the iteration time under per-link delays.

``solve_ilp`` works in three steps, each a proof when it succeeds:

1. the heuristic's makespan vs the windows' lower bound (``ilp_windows``: critical paths,
   stage loads, the one-machine bound): equal on most random instances, then done;
2. a destructive probe: the model of ``ilp_model`` with the makespan pinned to the bound
   (tight windows fix most order pairs): a schedule there is optimal, infeasibility raises
   the bound;
3. the full model bounded by the heuristic's makespan and warm-started from its schedule,
   solved with HiGHS (default) or CBC within what is left of the time limit.

The schedule read back (per stage, ops by start time) is replayed by the planner's
simulator; its makespan is the replay time.

Optimality is decided from numbers, not status strings: proven iff the solver's dual bound
is within the gap tolerance of the incumbent (with integral costs and delays, every
makespan is an integer, so a gap below 1 is a proof).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from engine.planner.activations import inflight_peaks
from engine.planner.costs import StageCosts
from engine.planner.errors import PlanningError
from engine.planner.generators import GENERATORS, generate
from engine.planner.ilp_cap import capped_warm_start
from engine.planner.ilp_model import IlpInstance, InfeasibleBound, build_instance
from engine.planner.ilp_solvers import available_solvers, solve
from engine.planner.ilp_windows import B, F, W, compute_windows
from engine.planner.ir import Op, OpKind, Schedule
from engine.planner.simulate import simulate

_KINDS = (OpKind.F, OpKind.B, OpKind.W)
_KIND_INDEX = {OpKind.F: F, OpKind.B: B, OpKind.W: W}


@dataclass(frozen=True)
class IlpResult:
    """The best schedule found, its makespan, and what is proven about it."""

    schedule: Schedule
    makespan: float
    proven_optimal: bool
    lower_bound: float
    gap: float  # (makespan - lower_bound) / makespan, 0 when proven
    solve_seconds: float
    solver_name: str
    status: str  # "optimal" | "time_limit" | "heuristic" (solver found nothing better)
    solver_status: str = ""  # how the result came about, with the back-end's own words
    searched: bool = True  # False when the first incumbent already met the windows' bound

    def to_json(self) -> dict[str, Any]:
        """The JSON form (``pmctl simulate --json`` merges these fields)."""
        return {
            "order": self.schedule.to_lists(),
            "makespan": self.makespan,
            "proven_optimal": self.proven_optimal,
            "lower_bound": self.lower_bound,
            "gap": self.gap,
            "solve_seconds": self.solve_seconds,
            "solver": self.solver_name,
            "status": self.status,
            "solver_status": self.solver_status,
            "searched": self.searched,
        }


def solve_ilp(
    num_stages: int,
    num_microbatches: int,
    costs: StageCosts,
    delays: tuple[float, ...],
    time_limit_s: float = 30,
    activation_cap: int | None = None,
    warm_start: Schedule | None = None,
    solver: str = "auto",
) -> IlpResult:
    """Minimum-makespan split-backward schedule for ``costs`` under link ``delays``.

    ``activation_cap`` limits each stage to at most that many micro-batches in flight
    (``activations``: F +1, B and W -0.5 each), as the generators' cap. ``warm_start`` (default: the better of the ``pipemorph`` and ``pipemorph+``
    heuristics; a capped 1F1B-like order when it breaks the cap) gives the first incumbent
    and the big-M bound. ``time_limit_s`` limits the solver (as the artifact's 30 s); the
    heuristics and the model build come on top (about a second at S=8, N=32), and
    ``solve_seconds`` is the whole wall time. Raises ``PlanningError`` for bad input.
    """
    S, N = num_stages, num_microbatches
    _check_args(S, N, costs, delays, time_limit_s, activation_cap)
    name = _pick_solver(solver)
    t0 = time.perf_counter()
    incumbent = _initial_schedule(S, N, costs, delays, activation_cap, warm_start)
    inc_sim = simulate(incumbent, costs, delays)
    ub = inc_sim.iteration_time  # an int for integer inputs, like the simulator's
    integral = _integral(costs, delays)
    abs_gap = 1.0 - 1e-6 if integral else 1e-6 * max(1.0, ub)
    case = _Case(S, N, costs, delays, activation_cap, name, abs_gap)
    bound = compute_windows(S, N, costs, delays, activation_cap).lower_bound
    schedule, makespan = incumbent, ub
    searched = ub - bound > abs_gap
    how, found = "proven by the windows' lower bound", False
    if searched:
        deadline = time.perf_counter() + time_limit_s
        # 1. Destructive probe: the optimum usually equals the bound, and with the makespan
        # pinned there the windows decide most order pairs, so a schedule at the bound is
        # found (optimal) or ruled out (the bound rises) in a fraction of the time.
        probe = _solve_case(case, bound, bound, None, time_limit_s / 3)
        how = f"probe at the bound: {probe.status}"
        if probe.schedule is not None and probe.makespan < makespan:
            schedule, makespan, found = probe.schedule, probe.makespan, True
        elif probe.infeasible:
            bound = bound + 1 if integral else bound  # no schedule at the bound: T > bound
        # 2. The full search from the incumbent, bounded below by what is proven.
        if makespan - bound > abs_gap:
            start = (incumbent, inc_sim.ops)
            main = _solve_case(case, ub, bound, start, max(0.1, deadline - time.perf_counter()))
            how = f"{how}; search: {main.status}"
            if main.schedule is not None:
                found = True
                if main.makespan < makespan:
                    schedule, makespan = main.schedule, main.makespan
            bound = max(bound, main.bound)
    elapsed = time.perf_counter() - t0

    if integral:
        bound = math.ceil(bound - 1e-6)  # every makespan is an integer
    bound = min(bound, makespan)
    proven = makespan - bound <= abs_gap
    if proven:
        bound = makespan
    status = "optimal" if proven else ("time_limit" if found else "heuristic")
    return IlpResult(
        schedule=schedule,
        makespan=makespan,
        proven_optimal=proven,
        lower_bound=bound,
        gap=0.0 if proven else (makespan - bound) / makespan,
        solve_seconds=elapsed,
        solver_name=name,
        status=status,
        solver_status=how,
        searched=searched,
    )


@dataclass(frozen=True)
class _Case:
    """One instance as the search passes it around."""

    S: int
    N: int
    costs: StageCosts
    delays: tuple[float, ...]
    cap: int | None
    solver: str
    abs_gap: float


@dataclass(frozen=True)
class _Solved:
    """One MILP solve, read back: the replayed schedule (None if none) and the solver's bound."""

    schedule: Schedule | None
    makespan: float
    bound: float
    infeasible: bool
    status: str


def _solve_case(
    case: _Case, upper: float, lower: float, start: tuple[Schedule, list] | None,
    limit_s: float,
) -> _Solved:
    """Solves the model for makespans in [lower, upper] and replays its schedule."""
    try:
        inst = build_instance(
            case.S, case.N, case.costs, case.delays, upper, case.cap, lower_bound=lower
        )
    except InfeasibleBound:
        return _Solved(None, math.inf, upper, True, "windows rule it out")
    vector = None if start is None else _start_vector(inst, start[0], start[1])
    out = solve(inst.model, case.solver, limit_s, vector, case.abs_gap)
    if out.values is None:
        return _Solved(None, math.inf, out.bound, "infeasible" in out.status.lower(), out.status)
    schedule = _read_schedule(inst, out.values, case.N)
    makespan = simulate(schedule, case.costs, case.delays).iteration_time
    # Replay is ASAP, so it is never slower than the solver's timing (up to the solver's
    # feasibility tolerance).
    if makespan > out.objective + 1e-3 + 1e-6 * upper:
        raise AssertionError(
            f"ILP schedule replays to {makespan:g} > solver makespan {out.objective:g}"
        )
    return _Solved(schedule, makespan, out.bound, False, out.status)


def _check_args(
    S: int, N: int, costs: StageCosts, delays: tuple[float, ...], time_limit_s: float,
    cap: int | None,
) -> None:
    if S < 1 or N < 1:
        raise PlanningError(f"need at least 1 stage and 1 micro-batch, got S={S}, N={N}")
    if costs.num_stages != S:
        raise PlanningError(f"costs cover {costs.num_stages} stages, expected {S}")
    if len(delays) != S - 1:
        raise PlanningError(f"need {S - 1} link delays, got {len(delays)}")
    if min(costs.tf + costs.tb + costs.tw) <= 0 or any(d < 0 for d in delays):
        raise PlanningError("op costs must be > 0 and link delays >= 0")
    if time_limit_s <= 0:
        raise PlanningError(f"time limit must be > 0 s, got {time_limit_s}")
    if cap is not None and cap < 1:
        raise PlanningError(f"activation cap must be >= 1, got {cap}")


def _pick_solver(solver: str) -> str:
    have = available_solvers()
    if solver == "auto":
        if not have:
            raise PlanningError(
                "no MILP solver found: install highspy, or pulp with its bundled CBC"
            )
        return have[0]
    if solver not in ("highs", "cbc"):
        raise PlanningError(f"unknown ILP solver {solver!r}: use auto, highs or cbc")
    if solver not in have:
        raise PlanningError(f"ILP solver {solver!r} is not installed here: use solver=\"auto\"")
    return solver


def _integral(costs: StageCosts, delays: tuple[float, ...]) -> bool:
    return all(float(v).is_integer() for v in (*costs.tf, *costs.tb, *costs.tw, *delays))


def fifo_normal_form(schedule: Schedule) -> Schedule:
    """Relabels each stage's ops so that ops of one kind run in micro-batch order (the k-th
    F of a stage becomes F k, and so on). The exchange argument of ``ilp_model`` shows the
    result replays no slower; the ILP's own schedules are already in this form."""
    stages = []
    for ops in schedule.stages:
        seen = {k: 0 for k in OpKind}
        out = []
        for op in ops:
            out.append(Op(op.kind, seen[op.kind]))
            seen[op.kind] += 1
        stages.append(tuple(out))
    return Schedule(tuple(stages), schedule.num_microbatches)


def _initial_schedule(
    S: int, N: int, costs: StageCosts, delays: tuple[float, ...], cap: int | None,
    warm_start: Schedule | None,
) -> Schedule:
    if warm_start is None:
        names = [n for n in ("pipemorph", "pipemorph+") if n in GENERATORS]
        plans = [generate(n, S, N, costs, plan_delays=delays) for n in names]
    elif warm_start.num_stages != S or warm_start.num_microbatches != N:
        raise PlanningError(
            f"warm start is for S={warm_start.num_stages}, N={warm_start.num_microbatches};"
            f" expected S={S}, N={N}"
        )
    elif not warm_start.split_backward:
        raise PlanningError("warm start must split B and W (no BW ops)")
    else:
        plans = [warm_start]
    plans = [fifo_normal_form(p) for p in plans]
    if cap is not None and any(max(inflight_peaks(p)) > cap for p in plans):
        return capped_warm_start(S, N, costs, delays, cap, plans)
    # The fastest plan: a tighter first bound shrinks every window, and the ILP then never
    # reports worse than either heuristic.
    return min(plans, key=lambda p: simulate(p, costs, delays).iteration_time)


def _start_vector(inst: IlpInstance, schedule: Schedule, timed_ops: list) -> list[float]:
    """The incumbent as column values: start times, makespan and the order binaries."""
    vals = [0.0] * inst.model.num_cols
    pos: dict[tuple[int, int, int], int] = {}
    makespan = 0.0
    for t in timed_ops:
        key = (t.stage, _KIND_INDEX[t.op.kind], t.op.mb)
        vals[inst.x[key]] = float(t.start)
        makespan = max(makespan, float(t.end))
    for s, ops in enumerate(schedule.stages):
        for p, op in enumerate(ops):
            pos[(s, _KIND_INDEX[op.kind], op.mb)] = p
    vals[inst.makespan] = makespan
    for (s, ka, i, kb, j), y in inst.order.items():
        if not isinstance(y, bool):
            vals[y] = 1.0 if pos[(s, ka, i)] < pos[(s, kb, j)] else 0.0
    return vals


def _read_schedule(inst: IlpInstance, values: list[float], N: int) -> Schedule:
    """Per stage, its ops sorted by start time (ties by kind, then micro-batch)."""
    S = 1 + max(s for s, _, _ in inst.x)
    stages = []
    for s in range(S):
        keyed = sorted(
            (values[inst.x[(s, k, j)]], k, j) for k in (F, B, W) for j in range(N)
        )
        stages.append(tuple(Op(_KINDS[k], j) for _, k, j in keyed))
    return fifo_normal_form(Schedule(tuple(stages), N))

