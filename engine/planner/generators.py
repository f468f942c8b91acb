"""Schedule generators by name: ``1f1b``, ``zb``, ``greedy``, ``pipemorph``, ``pipemorph+``.

- ``1f1b``: warm-up S-1-s forwards on stage s, then one F / one BW, then cool-down.
- ``zb`` and ``greedy``: the greedy B > F > W policy planned under ``plan_delays`` (None =
  healthy). They are the same function here; they differ in the delays callers plan them for
  (``zb`` = healthy plan, ``greedy`` = the true delays: "PipeMorph by re-simulation").
- ``pipemorph``: the adapted warm-up rule (``adapt``) + the policy, under ``plan_delays``.
- ``pipemorph+``: the improved heuristic (``improve``): never slower under ``plan_delays`` than
  ``pipemorph``, ``greedy`` or the healthy ``zb`` plan replayed under them.
"""

from __future__ import annotations

from engine.planner.adapt import adapted_warmup
from engine.planner.costs import StageCosts
from engine.planner.errors import PlanningError
from engine.planner.ir import Op, OpKind, Schedule
from engine.planner.links import check_delays
from engine.planner.policy import run_policy

GENERATORS = ("1f1b", "zb", "greedy", "pipemorph", "pipemorph+")


def generate(
    name: str,
    num_stages: int,
    num_microbatches: int,
    costs: StageCosts,
    plan_delays: tuple[float, ...] | None = None,
) -> Schedule:
    """Plans one iteration's schedule with generator ``name`` (see the module docstring)."""
    check_inputs(num_stages, num_microbatches, costs)
    delays = healthy(num_stages) if plan_delays is None else tuple(plan_delays)
    check_delays(delays, num_stages)
    if name == "1f1b":
        return one_f_one_b(num_stages, num_microbatches)
    if name in ("zb", "greedy"):
        return run_policy(num_stages, num_microbatches, costs, delays).schedule
    if name == "pipemorph":
        warmup = adapted_warmup(costs, delays, num_microbatches)
        return run_policy(num_stages, num_microbatches, costs, delays, warmup).schedule
    if name == "pipemorph+":
        from engine.planner.improve import improved_schedule

        return improved_schedule(num_stages, num_microbatches, costs, delays).schedule
    raise PlanningError(f"unknown schedule {name!r}: use one of {', '.join(GENERATORS)}")


def one_f_one_b(num_stages: int, num_microbatches: int) -> Schedule:
    """1F1B with full backwards: S-1-s warm-up forwards, steady F/BW pairs, cool-down BWs."""
    N = num_microbatches
    stages = []
    for s in range(num_stages):
        w = min(num_stages - 1 - s, N)
        ops = [Op(OpKind.F, j) for j in range(w)]
        for i in range(N - w):
            ops += [Op(OpKind.F, w + i), Op(OpKind.BW, i)]
        ops += [Op(OpKind.BW, j) for j in range(N - w, N)]
        stages.append(tuple(ops))
    return Schedule(tuple(stages), N)


def healthy(num_stages: int) -> tuple[float, ...]:
    """Zero delay on every link."""
    return (0,) * (num_stages - 1)


def check_inputs(num_stages: int, num_microbatches: int, costs: StageCosts) -> None:
    """Raises ``PlanningError`` for S < 1, N < 1 or costs that do not fit S stages."""
    if num_stages < 1:
        raise PlanningError(f"stages: {num_stages} (need at least 1)")
    if num_microbatches < 1:
        raise PlanningError(f"micro-batches: {num_microbatches} (need at least 1)")
    costs.check(num_stages)
