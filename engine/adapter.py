"""The pure per-iteration decision of the fault-aware plan source (no torch, no Redis).

Given the fault in force this iteration, the per-link delays known at the end of the
previous one and the profiled costs, ``Adapter`` returns the IterationPlan: which schedule
(and the generator that made it: the method's healthy one, or its adapted one, ``pipemorph``
= the paper's rule, ``pipemorph+`` = ours), offload on/off, which delays the engine injects. PipeMorph re-plans when its planning basis
changes, i.e. from the iteration after the fault change (the basis is what was known one
iteration earlier). A NIC crash is a crash of every link: PipeMorph plans every link as a
crashed one. ``matches`` and ``with_detection_log`` judge and log ``--detect``'s plans.

``engine.fault_plan`` holds the side effects (trace, control plane, the collective).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.healthy_plan import healthy_schedule
from engine.methods import Method
from engine.plan_source import IterationPlan, log_ms
from engine.planner.adapt import plan_warmup
from engine.planner.costs import StageCosts
from engine.planner.errors import PlanningError
from engine.planner.generators import generate
from engine.planner.ir import Schedule
from injector.trace import Fault

# a crashed link's delegates run at CPU-path speed; plan as if it were this many forwards slow
CRASH_PLAN_FORWARDS = 4
# the requirement on --detect: plans within this fraction of the injected delay
DETECT_TOLERANCE = 0.2


def offload_for(method: Method, fault: Fault) -> bool:
    """Whether p2p goes through the delegates while ``fault`` is in force."""
    if method.offload == "always":
        return True
    return method.offload == "on-fault" and not fault.healthy


@dataclass(frozen=True)
class Basis:
    """What PipeMorph plans for: per-link delays (s, inf = down) and where they come from."""

    delays_s: tuple[float, ...]
    source: str  # "injected" | "detected"

    @property
    def healthy(self) -> bool:
        return not any(self.delays_s)


class Adapter:
    """The pure per-iteration decision for one method (same inputs -> same plan on every rank)."""

    def __init__(self, method: Method, num_stages: int, num_microbatches: int) -> None:
        self.method = method
        self.S = num_stages
        self.N = num_microbatches
        self.healthy = healthy_schedule(method, num_stages, num_microbatches)
        self._planned: tuple[Basis, Schedule, StageCosts, int, dict[str, Any]] | None = None
        self.worst_delay_s = 0.0  # largest finite delay seen so far (crash planning)

    def plan(
        self,
        iteration: int,
        fault: Fault,
        basis: Basis,
        profiled: StageCosts | None,
        extra: dict[str, Any] | None = None,
    ) -> IterationPlan:
        """The plan of ``iteration``: ``fault`` is in force now (offload, injected delays);
        ``basis`` is what was known at the end of the previous iteration (PipeMorph's plan)."""
        injected = fault.link_delays_s(self.S)
        self.worst_delay_s = max(
            [self.worst_delay_s, *(d for d in (*injected, *basis.delays_s) if math.isfinite(d))]
        )
        info: dict[str, Any] = {
            "injected": fault.to_json(),
            "offload": offload_for(self.method, fault),
            **(extra or {}),
        }
        schedule, costs, generator = self.healthy, None, self.method.healthy_schedule
        info["planned_for_ms"] = None
        if self.method.adapts and not basis.healthy:
            adapted = self._adapted(iteration, basis, profiled)
            if isinstance(adapted, str):
                info["notes"] = [adapted]
            else:
                schedule, costs, planned_at, plan_info = adapted
                info.update(plan_info, planned_at=planned_at)
                generator = self.method.adapt_generator
        elif self.method.adapts:
            self._planned = None  # healthy again: back to ZB; the next fault re-plans
        return IterationPlan(
            iteration=iteration,
            schedule=schedule,
            offload=info["offload"],
            link_delays_s=injected,
            fault=info,
            planned_costs=costs,
            generator=generator,
        )

    def _adapted(
        self, iteration: int, basis: Basis, profiled: StageCosts | None
    ) -> tuple[Schedule, StageCosts, int, dict[str, Any]] | str:
        """The adapted plan for ``basis`` (planned once per basis), or why there is none."""
        if self._planned is not None and self._planned[0] == basis:
            _, schedule, costs, at, plan_info = self._planned
            return schedule, costs, at, plan_info
        if profiled is None:
            return "no profiled costs yet: kept the healthy plan"
        delays_ms, notes = self._planning_delays_ms(basis, profiled)
        try:
            schedule = generate(self.method.adapt_generator, self.S, self.N, profiled, delays_ms)
        except PlanningError as exc:
            return f"re-planning failed ({exc}): kept the healthy plan"
        if self.method.adapt_generator == "pipemorph":  # the rule caps w at N: say so
            capped = plan_warmup(profiled, delays_ms, self.N).warning()
            notes += [capped] if capped else []
        plan_info = {
            "planned_for_ms": list(delays_ms),
            "plan_basis": basis.source,
            "notes": notes,
        }
        self._planned = (basis, schedule, profiled, iteration, plan_info)
        return schedule, profiled, iteration, plan_info

    def _planning_delays_ms(
        self, basis: Basis, costs: StageCosts
    ) -> tuple[tuple[float, ...], list[str]]:
        notes: list[str] = []
        crash_ms = max(self.worst_delay_s * 1000.0, CRASH_PLAN_FORWARDS * max(costs.tf))
        out = []
        for i, d in enumerate(basis.delays_s):
            if math.isinf(d):
                out.append(round(crash_ms, 3))
                notes.append(
                    f"link {i}_{i + 1} is down: delegates carry it; planned as {crash_ms:.1f} ms"
                    " (the worst delay seen, at least "
                    f"{CRASH_PLAN_FORWARDS} forwards)"
                )
            else:
                out.append(log_ms(d))
        return tuple(out), notes


def matches(fault: Fault, delays_s: tuple[float, ...], num_stages: int) -> bool:
    """True when planned ``delays_s`` match the injected fault: healthy links at 0, slow
    ones within ``DETECT_TOLERANCE`` of the injected delay (a crash never matches)."""
    if fault.crashed:
        return False
    injected = fault.link_delays_s(num_stages)
    return all(
        abs(d - i) <= DETECT_TOLERANCE * i if i > 0 else d == 0
        for d, i in zip(delays_s, injected)
    )


def with_detection_log(
    fault: Fault, basis: Basis, detection: dict[str, Any], matched_at: int | None
) -> dict[str, Any]:
    """The ``fault`` dict's detection fields: injected vs detected delay, and the lag in
    iterations from the injected change to the first plan that matched it."""
    out: dict[str, Any] = {"detected": detection}
    if not fault.healthy and not fault.crashed:
        out["injected_delay_ms"] = log_ms(fault.delay_s)  # the largest
        out["injected_delays_ms"] = [log_ms(d) for d in fault.delays_s]  # per link of links
        out["detected_delay_ms"] = [log_ms(basis.delays_s[a]) for a, _ in fault.links]
    if matched_at is not None:
        out["detect_lag_iterations"] = matched_at - fault.since_iteration
    return out
