"""One ``pmctl simulate`` scenario as an importable function: plan a schedule for the plan
delays (or take a given one), replay it under the actual delays and compute stragglers, and
collect warnings and ILP facts.

Compute stragglers (``slow``: a factor per stage) slow every op of their stage in the replay.
The adaptive schedules plan for the slowed costs, as they plan for the actual delays; ``zb``,
``1f1b`` and ``gpipe`` plan for the base costs (a baseline does not adapt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.planner.activations import check_cap, check_schedule_fits
from engine.planner.adapt import plan_warmup
from engine.planner.costs import StageCosts
from engine.planner.errors import PlanningError
from engine.planner.generators import GENERATORS, check_inputs, generate, healthy
from engine.planner.ir import Schedule
from engine.planner.links import check_delays
from engine.planner.simulate import SimResult, simulate

SCHEDULES = (*GENERATORS, "ilp")
# Generators planned for the actual delays unless told otherwise (the rest plan healthy).
_ADAPTIVE = ("greedy", "pipemorph", "pipemorph+", "ilp")


@dataclass(frozen=True)
class Scenario:
    """What to plan and under which delays to replay it."""

    schedule: str
    num_stages: int
    num_microbatches: int
    costs: StageCosts
    delays: tuple[float, ...]
    plan_delays: tuple[float, ...] | None = None  # None: the default for ``schedule``
    time_limit_s: float = 30.0  # ILP only
    slow: tuple[float, ...] | None = None  # compute factor per stage; None: all 1
    activation_cap: int | None = None  # most micro-batches in flight per stage
    given: Schedule | None = None  # replay this order instead of planning (``schedule`` names it)


@dataclass(frozen=True)
class Outcome:
    """The replayed result, the delays it was planned for, and what the user should know."""

    result: SimResult
    plan_delays: tuple[float, ...]
    warnings: list[str] = field(default_factory=list)
    ilp: dict[str, Any] | None = None  # proven_optimal, lower_bound, solve_seconds
    slow: tuple[float, ...] | None = None
    activation_cap: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object: the simulation's fields plus ILP facts and warnings."""
        out = self.result.to_json()
        out["plan_delays"] = list(self.plan_delays)
        S = self.result.schedule.num_stages
        out["slow_stages"] = list(self.slow) if self.slow is not None else [1] * S
        out["activation_cap"] = self.activation_cap
        if self.ilp is not None:
            out.update(self.ilp)
        out["warnings"] = self.warnings
        return out


def default_plan_delays(
    schedule: str, num_stages: int, delays: tuple[float, ...]
) -> tuple[float, ...]:
    """Healthy for ``zb`` and ``1f1b``; the actual delays for the adaptive schedules."""
    return tuple(delays) if schedule in _ADAPTIVE else healthy(num_stages)


def run_scenario(sc: Scenario) -> Outcome:
    """Plans ``sc.schedule`` (or takes ``sc.given``) and replays it under ``sc.delays`` and the
    slowed costs."""
    if sc.given is None and sc.schedule not in SCHEDULES:
        raise PlanningError(f"unknown schedule {sc.schedule!r}: use one of {', '.join(SCHEDULES)}")
    check_inputs(sc.num_stages, sc.num_microbatches, sc.costs)
    check_delays(sc.delays, sc.num_stages)
    check_cap(sc.activation_cap)
    actual = sc.costs if sc.slow is None else sc.costs.slowed(sc.slow)
    if sc.given is not None:
        # A given order is replayed as is: the cap can only be checked, not applied.
        check_schedule_fits(sc.given, sc.activation_cap, sc.schedule)
        result = simulate(sc.given, actual, sc.delays)
        return Outcome(result, tuple(sc.delays), [], None, sc.slow, sc.activation_cap)
    adaptive = sc.schedule in _ADAPTIVE
    plan = sc.plan_delays if sc.plan_delays is not None else default_plan_delays(
        sc.schedule, sc.num_stages, sc.delays
    )
    check_delays(plan, sc.num_stages)
    plan_costs = actual if adaptive else sc.costs
    warnings: list[str] = []
    if sc.schedule == "pipemorph":
        note = plan_warmup(plan_costs, plan, sc.num_microbatches).warning()
        if note:
            warnings.append(note)
    ilp = None
    if sc.schedule == "ilp":
        schedule, ilp = _solve_ilp(sc, plan, plan_costs)
    else:
        schedule = generate(sc.schedule, sc.num_stages, sc.num_microbatches, plan_costs, plan,
                            sc.activation_cap)
    result = simulate(schedule, actual, sc.delays)
    return Outcome(result, plan, warnings, ilp, sc.slow, sc.activation_cap)


def _solve_ilp(
    sc: Scenario, plan: tuple[float, ...], costs: StageCosts
) -> tuple[Any, dict[str, Any]]:
    from engine.planner.ilp import solve_ilp  # pulp is imported only for the ILP

    if not sc.time_limit_s > 0:
        raise PlanningError(f"time limit: {sc.time_limit_s} s must be > 0")
    S, N, cap = sc.num_stages, sc.num_microbatches, sc.activation_cap
    warm = generate("pipemorph+", S, N, costs, plan, cap)
    res = solve_ilp(S, N, costs, plan, sc.time_limit_s, activation_cap=cap, warm_start=warm)
    facts = {
        "proven_optimal": bool(res.proven_optimal),
        "lower_bound": res.lower_bound,
        "solve_seconds": res.solve_seconds,
    }
    return res.schedule, facts
