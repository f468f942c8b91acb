"""The static plan source: the method's healthy schedule every iteration, no faults.

``zb``, ``pipemorph-cpu``, ``pipemorph`` and ``all-cpu`` run the healthy ZB schedule (greedy
B > F > W under uniform costs), ``1f1b`` its 1F1B schedule; only ``all-cpu`` offloads. Faults
come from ``engine.fault_plan``; the hidden ``--inject-delay LINK=SECONDS@ITER`` (benchmarks
and tests without a control plane) is turned into a one-line trace by ``inject_delay_trace``
and takes the same path as ``--trace``.
"""

from __future__ import annotations

import re

from engine.errors import EngineConfigError
from engine.methods import Method
from engine.plan_source import IterationPlan, LinkObservation
from engine.planner.costs import StageCosts
from engine.planner.generators import generate
from engine.planner.ir import Schedule
from injector.trace import Trace, TraceError, parse_link, parse_trace


def healthy_schedule(method: Method, num_stages: int, num_microbatches: int) -> Schedule:
    """The method's schedule with no fault."""
    name = "zb" if method.split_backward else "1f1b"
    return generate(name, num_stages, num_microbatches, StageCosts.uniform(num_stages, 1, 1, 1))


def inject_delay_trace(text: str, num_stages: int) -> Trace:
    """``LINK=SECONDS@ITER`` (LINK as ``2`` or ``2_3``; SECONDS may be ``inf``) as the
    one-line trace ``ITER;A_B;SECONDS``."""
    where = f"--inject-delay {text!r}"
    m = re.fullmatch(r"(\d+(?:_\d+)?)=([0-9.]+|inf)@(\d+)", text.strip())
    if not m:
        raise EngineConfigError(f"{where}: expected LINK=SECONDS@ITER, e.g. 2_3=0.06@3")
    link = m.group(1) if "_" in m.group(1) else f"{m.group(1)}_{int(m.group(1)) + 1}"
    try:
        a, b = parse_link(link, num_stages)
        return parse_trace(f"{m.group(3)};{a}_{b};{m.group(2)}", num_stages)
    except TraceError as exc:
        raise EngineConfigError(f"{where}: {exc}") from None


class HealthyPlanSource:
    """Implements ``engine.plan_source.PlanSource`` without faults or a control plane."""

    def __init__(self, method: Method, num_stages: int, num_microbatches: int) -> None:
        self.method = method
        self.num_stages = num_stages
        self.healthy = healthy_schedule(method, num_stages, num_microbatches)

    def plan(self, iteration: int, profiled: StageCosts | None) -> IterationPlan:
        """The healthy plan."""
        return IterationPlan(iteration, self.healthy, self.method.offload == "always",
                             (0.0,) * (self.num_stages - 1))

    def observe(self, observations: list[LinkObservation]) -> None:
        """Healthy runs detect nothing."""

    def finish(self, error: str | None) -> None:
        """Nothing to publish without a control plane."""
