"""The static plan source: the method's healthy schedule every iteration, no faults.

``zb``, ``pipemorph-cpu``, ``pipemorph``, ``pipemorph+`` and ``all-cpu`` run the healthy ZB
schedule (greedy B > F > W under uniform costs, at most 2 x S micro-batches in flight per stage
as the artifact's Megatron scheduler), ``1f1b`` its 1F1B schedule; only ``all-cpu`` offloads. Faults
come from ``engine.fault_plan`` (a trace file, or the spec's ``--links/--delay/--fault-at``).
"""

from __future__ import annotations

from engine.methods import Method
from engine.plan_source import IterationPlan, LinkObservation
from engine.planner.costs import StageCosts
from engine.planner.generators import generate
from engine.planner.ir import Schedule


def healthy_schedule(method: Method, num_stages: int, num_microbatches: int) -> Schedule:
    """The method's schedule with no fault (under its activation cap: 2 x S for the ZB family)."""
    return generate(method.healthy_schedule, num_stages, num_microbatches, StageCosts.uniform(num_stages, 1, 1, 1),
                    activation_cap=method.healthy_activation_cap(num_stages))


class HealthyPlanSource:
    """Implements ``engine.plan_source.PlanSource`` without faults or a control plane."""

    def __init__(self, method: Method, num_stages: int, num_microbatches: int) -> None:
        self.method = method
        self.num_stages = num_stages
        self.healthy = healthy_schedule(method, num_stages, num_microbatches)

    def plan(self, iteration: int, profiled: StageCosts | None) -> IterationPlan:
        """The healthy plan."""
        return IterationPlan(iteration, self.healthy, self.method.offload == "always",
                             (0.0,) * (self.num_stages - 1), generator=self.method.healthy_schedule)

    def observe(self, observations: list[LinkObservation]) -> None:
        """Healthy runs detect nothing."""

    def finish(self, error: str | None) -> None:
        """Nothing to publish without a control plane."""
