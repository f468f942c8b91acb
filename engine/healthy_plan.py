"""The static plan source: the method's healthy schedule every iteration, no faults.

``zb``, ``pipemorph-cpu``, ``pipemorph`` and ``all-cpu`` run the healthy ZB schedule (greedy
B > F > W under uniform costs), ``1f1b`` its 1F1B schedule; only ``all-cpu`` offloads. Faults
come from ``engine.fault_plan``. For benchmarks and tests without a control plane,
``ManualDelay`` (the hidden ``--inject-delay LINK=SECONDS@ITER``) injects one slow link from
an iteration on, with each method's reaction: offload for PipeMorph-CPU/PipeMorph, and for
PipeMorph the adapted schedule from the next iteration, planned with the profiled costs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from engine.errors import EngineConfigError
from engine.methods import Method
from engine.plan_source import IterationPlan, LinkObservation
from engine.planner.costs import StageCosts
from engine.planner.generators import generate
from engine.planner.ir import Schedule


def healthy_schedule(method: Method, num_stages: int, num_microbatches: int) -> Schedule:
    """The method's schedule with no fault."""
    name = "zb" if method.split_backward else "1f1b"
    return generate(name, num_stages, num_microbatches, StageCosts.uniform(num_stages, 1, 1, 1))


@dataclass(frozen=True)
class ManualDelay:
    """One slow link from ``since`` on (test/benchmark hook)."""

    link: int
    seconds: float
    since: int

    @classmethod
    def parse(cls, text: str, num_stages: int) -> ManualDelay:
        """Parses ``LINK=SECONDS@ITER`` (LINK as ``2`` or ``2_3``; SECONDS may be ``inf``)."""
        m = re.fullmatch(r"(\d+)(?:_(\d+))?=([0-9.]+|inf)@(\d+)", text.strip())
        if not m:
            raise EngineConfigError(
                f"--inject-delay {text!r}: expected LINK=SECONDS@ITER, e.g. 2_3=0.06@3")
        link = int(m.group(1))
        if m.group(2) is not None and int(m.group(2)) != link + 1:
            raise EngineConfigError(f"--inject-delay {text!r}: stages of a link are adjacent")
        if link >= num_stages - 1:
            raise EngineConfigError(
                f"--inject-delay {text!r}: link {link} does not exist with {num_stages} stages")
        return cls(link, float(m.group(3)), int(m.group(4)))


class HealthyPlanSource:
    """Implements ``engine.plan_source.PlanSource`` without a control plane."""

    def __init__(self, method: Method, num_stages: int, num_microbatches: int,
                 manual: ManualDelay | None = None) -> None:
        self.method = method
        self.num_stages = num_stages
        self.num_microbatches = num_microbatches
        self.manual = manual
        self.healthy = healthy_schedule(method, num_stages, num_microbatches)
        self._adapted: Schedule | None = None
        self._adapted_costs: StageCosts | None = None

    def plan(self, iteration: int, profiled: StageCosts | None) -> IterationPlan:
        """The healthy plan, or the manual fault's plan once it is in force."""
        m = self.manual
        if m is None or iteration < m.since:
            return IterationPlan(iteration, self.healthy, self.method.offload == "always",
                                 (0.0,) * (self.num_stages - 1))
        delays = tuple(m.seconds if i == m.link else 0.0 for i in range(self.num_stages - 1))
        fault = {"links": [f"{m.link}_{m.link + 1}"],
                 "delay_s": None if math.isinf(m.seconds) else m.seconds,
                 "crash": math.isinf(m.seconds), "since": m.since, "source": "inject-delay"}
        schedule, costs = self.healthy, None
        if self.method.adapts and iteration > m.since and profiled is not None:
            if self._adapted is None:
                finite = tuple(0.0 if math.isinf(d) else d * 1000.0 for d in delays)
                self._adapted = generate("pipemorph", self.num_stages, self.num_microbatches,
                                         profiled, plan_delays=finite)
                self._adapted_costs = profiled
            schedule, costs = self._adapted, self._adapted_costs
        offload = self.method.offload in ("always", "on-fault")
        return IterationPlan(iteration, schedule, offload, delays, fault, costs)

    def observe(self, observations: list[LinkObservation]) -> None:
        """Healthy runs detect nothing."""

    def finish(self, error: str | None) -> None:
        """Nothing to publish without a control plane."""
