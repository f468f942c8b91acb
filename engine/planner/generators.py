"""Schedule generators by name: ``1f1b``, ``zb``, ``greedy``, ``pipemorph``, ``pipemorph+``,
``gpipe``; a table, so adding one is one entry in ``GENERATORS``.

- ``1f1b``: warm-up S-1-s forwards on stage s, then one F / one BW, then cool-down.
- ``zb`` and ``greedy``: the greedy B > F > W policy planned under ``plan_delays`` (None =
  healthy). They are the same function here; they differ in the delays callers plan them for
  (``zb`` = healthy plan, ``greedy`` = the true delays: "PipeMorph by re-simulation").
- ``pipemorph``: the adapted warm-up rule (``adapt``) + the policy, under ``plan_delays``.
- ``pipemorph+``: the improved heuristic (``improve``): never slower under ``plan_delays`` than
  ``pipemorph``, ``greedy`` or the healthy ``zb`` plan replayed under them.
- ``gpipe``: each stage takes its next queued op, F > B > W, and waits for it (``policy``).

``activation_cap`` K (None = none, every generator's default) bounds every stage to K
micro-batches in flight (``activations``: F +1, B and W -0.5 each, BW -1): 1F1B's warm-up
becomes min(S-1-s, K-1); the policies never issue an F that would exceed K.
"""

from __future__ import annotations

from typing import Callable, Optional

from engine.planner.activations import check_cap
from engine.planner.adapt import adapted_warmup
from engine.planner.costs import StageCosts
from engine.planner.errors import PlanningError
from engine.planner.ir import Op, OpKind, Schedule
from engine.planner.links import check_delays
from engine.planner.policy import run_policy

# (num_stages, num_microbatches, costs, plan delays, activation cap) -> schedule
Generator = Callable[[int, int, StageCosts, tuple[float, ...], Optional[int]], Schedule]


def generate(
    name: str,
    num_stages: int,
    num_microbatches: int,
    costs: StageCosts,
    plan_delays: tuple[float, ...] | None = None,
    activation_cap: int | None = None,
) -> Schedule:
    """Plans one iteration's schedule with generator ``name`` (see the module docstring).

    ``activation_cap``: at most that many micro-batches in flight per stage (None: no cap).
    Raises ``PlanningError`` for an unknown name or bad input (a cap below 1 included).
    """
    gen = GENERATORS.get(name)
    if gen is None:
        raise PlanningError(f"unknown schedule {name!r}: use one of {', '.join(GENERATORS)}")
    check_inputs(num_stages, num_microbatches, costs)
    check_cap(activation_cap)
    delays = healthy(num_stages) if plan_delays is None else tuple(plan_delays)
    check_delays(delays, num_stages)
    return gen(num_stages, num_microbatches, costs, delays, activation_cap)


def one_f_one_b(num_stages: int, num_microbatches: int, cap: int | None = None) -> Schedule:
    """1F1B with full backwards: S-1-s warm-up forwards (at most ``cap`` - 1), steady F/BW
    pairs, cool-down BWs. A stage holds warm-up + 1 micro-batches at most."""
    N = num_microbatches
    stages = []
    for s in range(num_stages):
        w = min(num_stages - 1 - s, N, N if cap is None else cap - 1)
        ops = [Op(OpKind.F, j) for j in range(w)]
        for i in range(N - w):
            ops += [Op(OpKind.F, w + i), Op(OpKind.BW, i)]
        ops += [Op(OpKind.BW, j) for j in range(N - w, N)]
        stages.append(tuple(ops))
    return Schedule(tuple(stages), N)


def _one_f_one_b(S: int, N: int, costs: StageCosts, delays: tuple[float, ...],
                 cap: int | None) -> Schedule:
    return one_f_one_b(S, N, cap)


def _greedy(S: int, N: int, costs: StageCosts, delays: tuple[float, ...],
            cap: int | None) -> Schedule:
    return run_policy(S, N, costs, delays, activation_cap=cap).schedule


def _pipemorph(S: int, N: int, costs: StageCosts, delays: tuple[float, ...],
               cap: int | None) -> Schedule:
    warmup = adapted_warmup(costs, delays, N)
    return run_policy(S, N, costs, delays, warmup, activation_cap=cap).schedule


def _pipemorph_plus(S: int, N: int, costs: StageCosts, delays: tuple[float, ...],
                    cap: int | None) -> Schedule:
    from engine.planner.improve import improved_schedule

    return improved_schedule(S, N, costs, delays, activation_cap=cap).schedule


def _gpipe(S: int, N: int, costs: StageCosts, delays: tuple[float, ...],
           cap: int | None) -> Schedule:
    return run_policy(S, N, costs, delays, activation_cap=cap, rule="gpipe").schedule


GENERATORS: dict[str, Generator] = {
    "1f1b": _one_f_one_b,
    "zb": _greedy,
    "greedy": _greedy,
    "pipemorph": _pipemorph,
    "pipemorph+": _pipemorph_plus,
    "gpipe": _gpipe,
}


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
