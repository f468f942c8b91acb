"""One ``pmctl simulate`` scenario as an importable function: plan a schedule for the plan
delays, replay it under the actual delays, and collect warnings and ILP facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.planner.adapt import plan_warmup
from engine.planner.costs import StageCosts
from engine.planner.errors import PlanningError
from engine.planner.generators import GENERATORS, check_inputs, generate, healthy
from engine.planner.links import check_delays
from engine.planner.simulate import SimResult, simulate

SCHEDULES = GENERATORS + ("ilp",)
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


@dataclass(frozen=True)
class Outcome:
    """The replayed result, the delays it was planned for, and what the user should know."""

    result: SimResult
    plan_delays: tuple[float, ...]
    warnings: list[str] = field(default_factory=list)
    ilp: dict[str, Any] | None = None  # proven_optimal, lower_bound, solve_seconds

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object: the simulation's fields plus ILP facts and warnings."""
        out = self.result.to_json()
        out["plan_delays"] = list(self.plan_delays)
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
    """Plans ``sc.schedule`` for the plan delays and replays it under ``sc.delays``."""
    if sc.schedule not in SCHEDULES:
        raise PlanningError(f"unknown schedule {sc.schedule!r}: use one of {', '.join(SCHEDULES)}")
    check_inputs(sc.num_stages, sc.num_microbatches, sc.costs)
    check_delays(sc.delays, sc.num_stages)
    plan = sc.plan_delays if sc.plan_delays is not None else default_plan_delays(
        sc.schedule, sc.num_stages, sc.delays
    )
    check_delays(plan, sc.num_stages)
    warnings: list[str] = []
    if sc.schedule == "pipemorph":
        note = plan_warmup(sc.costs, plan, sc.num_microbatches).warning()
        if note:
            warnings.append(note)
    ilp = None
    if sc.schedule == "ilp":
        schedule, ilp = _solve_ilp(sc, plan)
    else:
        schedule = generate(sc.schedule, sc.num_stages, sc.num_microbatches, sc.costs, plan)
    return Outcome(simulate(schedule, sc.costs, sc.delays), plan, warnings, ilp)


def _solve_ilp(sc: Scenario, plan: tuple[float, ...]) -> tuple[Any, dict[str, Any]]:
    from engine.planner.ilp import solve_ilp  # pulp is imported only for the ILP

    if not sc.time_limit_s > 0:
        raise PlanningError(f"time limit: {sc.time_limit_s} s must be > 0")
    warm = generate("pipemorph+", sc.num_stages, sc.num_microbatches, sc.costs, plan)
    res = solve_ilp(
        sc.num_stages, sc.num_microbatches, sc.costs, plan, sc.time_limit_s, warm_start=warm
    )
    facts = {
        "proven_optimal": bool(res.proven_optimal),
        "lower_bound": res.lower_bound,
        "solve_seconds": res.solve_seconds,
    }
    return res.schedule, facts
