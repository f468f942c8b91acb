"""A plan source that replays a JSON script of per-iteration plans (tests only, hidden
``--plan-script FILE``): lets one run exercise many schedules and both p2p paths.

The file is a list; entry i is iteration i's plan (the last entry repeats):
``{"schedule": [["F0", ...], ...], "offload": false, "delays_s": [0, 0, 0]}``.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import EngineConfigError
from engine.plan_source import IterationPlan, LinkObservation
from engine.planner.costs import StageCosts
from engine.planner.ir import Schedule, ScheduleParseError


class ScriptedPlanSource:
    """Implements ``engine.plan_source.PlanSource`` from a script file."""

    def __init__(self, path: str, num_stages: int, num_microbatches: int) -> None:
        try:
            entries = json.loads(Path(path).read_text(encoding="utf-8"))
            self.plans = [
                (Schedule.from_lists(e["schedule"], num_microbatches), bool(e.get("offload")),
                 tuple(float(d) for d in e.get("delays_s", [0.0] * (num_stages - 1))))
                for e in entries
            ]
        except (OSError, ValueError, KeyError, TypeError, ScheduleParseError) as exc:
            raise EngineConfigError(f"--plan-script {path}: {exc}") from None
        if not self.plans:
            raise EngineConfigError(f"--plan-script {path}: no plans")

    def plan(self, iteration: int, profiled: StageCosts | None) -> IterationPlan:
        """Entry ``iteration`` of the script (the last one repeats)."""
        schedule, offload, delays = self.plans[min(iteration, len(self.plans) - 1)]
        return IterationPlan(iteration, schedule, offload, delays, {"source": "script"})

    def observe(self, observations: list[LinkObservation]) -> None:
        """Scripts ignore observations."""

    def finish(self, error: str | None) -> None:
        """Nothing to publish."""
