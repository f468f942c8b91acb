"""Schedule validation: every op exactly once, W after its B, and an order that cannot deadlock.

Errors name the stage and the op, e.g. ``stage 2: W3 comes before its B3``.
"""

from __future__ import annotations

from engine.planner.costs import StageCosts
from engine.planner.errors import PlanningError
from engine.planner.ir import Schedule
from engine.planner.replay import BW, B, F, Lowered, W, lower, replay

_NAMES = ("F", "B", "W", "BW")


def check_structure(schedule: Schedule, lowered: Lowered | None = None) -> None:
    """Checks op sets and same-stage order (not cross-stage deadlocks); raises ``PlanningError``.

    Every stage must run F, and either B then W (split backward) or BW, for each micro-batch
    exactly once, with one backward style for the whole schedule. ``lowered`` is
    ``replay.lower(schedule)`` when the caller has it.
    """
    N = schedule.num_microbatches
    if schedule.num_stages < 1:
        raise PlanningError("schedule has no stages")
    if N < 1:
        raise PlanningError(f"schedule has {N} micro-batches (need at least 1)")
    kinds, mbs = lowered if lowered is not None else lower(schedule)
    split = schedule.split_backward
    expected = (F, B, W) if split else (F, BW)
    allowed = set(expected)
    for s, (ks, js) in enumerate(zip(kinds, mbs)):
        seen = bytearray(4 * N)  # seen[kind * N + mb]
        for k, j in zip(ks, js):
            if k not in allowed:
                raise PlanningError(
                    f"stage {s}: {_NAMES[k]}{j}: the schedule mixes split B/W ops and full "
                    "backwards (BW); use one style"
                )
            if not 0 <= j < N:
                raise PlanningError(
                    f"stage {s}: {_NAMES[k]}{j} names micro-batch {j}, outside 0..{N - 1}"
                )
            key = k * N + j
            if seen[key]:
                raise PlanningError(f"stage {s}: {_NAMES[k]}{j} appears twice")
            if k == W and not seen[B * N + j]:
                raise PlanningError(f"stage {s}: W{j} comes before its B{j}")
            seen[key] = 1
        if len(ks) != len(expected) * N:
            missing = next(
                f"{_NAMES[k]}{j}" for j in range(N) for k in expected if not seen[k * N + j]
            )
            raise PlanningError(f"stage {s}: {missing} is missing")


def validate(schedule: Schedule) -> None:
    """Raises ``PlanningError`` (naming stage and op) for a missing or duplicate op, a W before
    its B, or a cross-stage order that deadlocks (found by replaying it)."""
    lowered = lower(schedule)
    check_structure(schedule, lowered)
    # Whether a replay deadlocks depends only on the orders, not on costs or delays.
    S = schedule.num_stages
    replay(schedule, StageCosts.uniform(S, 1, 1, 1), (0,) * (S - 1), lowered)
