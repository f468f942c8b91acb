"""Stage policies run event by event (PAPER.md 2-3 and 7), with an optional activation cap.

- ``greedy``: an idle stage runs its highest-priority *ready* op, B > F > W, lowest
  micro-batch first (ZB), optionally after a fixed warm-up per stage (PipeMorph).
- ``gpipe``: an idle stage takes its highest-priority *queued* op, F > B > W, lowest
  micro-batch first, and waits for it when it is not ready (no filling).

With ``activation_cap`` K neither issues an F that would take the stage above K micro-batches
in flight (``activations``: F +1, B and W -0.5 each); a stage at the cap runs other work.

Event-driven: a heap of (time, event) where an event is "one more op of a kind became ready on
a stage" or "a stage finished its op". After all events of one instant are applied, every idle
stage that changed picks its next op. The cost is O(ops log ops), independent of time scale.

Per stage and kind, ops become ready in micro-batch order (each upstream stage runs them in
that order and a link's delay is constant), so the ready set of a kind is the range
``done..ready-1`` and "lowest micro-batch first" is simply the next index.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Literal

from engine.planner.activations import HALVES, check_cap, f_fits
from engine.planner.costs import StageCosts
from engine.planner.errors import PlanningError
from engine.planner.ir import Op, OpKind, Schedule
from engine.planner.replay import B, F, W, stage_op_costs

_FINISH = -1
# Event times are compared for "the same instant" (a B arriving as the stage frees up is
# chosen first). With profiled, non-integer costs, float rounding would decide such ties:
# times are snapped to a 1e-9 grid, far below any cost or delay that matters.
_GRID_DIGITS = 9


def _instant(t: float) -> float:
    return round(t, _GRID_DIGITS)
_KINDS = (OpKind.F, OpKind.B, OpKind.W)

Rule = Literal["greedy", "gpipe"]


@dataclass(frozen=True)
class PolicyRun:
    """The order the policy produced and the iteration time it reached while planning."""

    schedule: Schedule
    iteration_time: float


def run_policy(
    num_stages: int,
    num_microbatches: int,
    costs: StageCosts,
    delays: tuple[float, ...],
    warmup: list[int] | None = None,
    activation_cap: int | None = None,
    rule: Rule = "greedy",
) -> PolicyRun:
    """Plans a B/W-split schedule by running the policy ``rule`` under ``delays``.

    ``greedy`` without ``warmup``: whenever a stage is idle it runs its highest-priority ready
    op, B > F > W, lowest micro-batch first (the greedy ZB policy). With ``warmup``: stage s
    first issues ``warmup[s]`` forwards (at most the cap), then waits for its first B, then
    follows the same policy (PipeMorph's generator). ``gpipe``: see the module docstring (it
    takes no warm-up). Raises ``PlanningError`` if the warm-up deadlocks (it must be
    non-increasing along the pipeline, between 1 and N) or the cap is not a whole number >= 1.
    """
    S, N = num_stages, num_microbatches
    check_cap(activation_cap)
    if warmup is not None:
        if rule != "greedy":
            raise PlanningError(f"the {rule} policy takes no warm-up (got {warmup})")
        _check_warmup(warmup, S, N)
        if activation_cap is not None:
            # Before its first B a stage holds every forward it ran: the cap bounds the warm-up.
            warmup = [min(w, activation_cap) for w in warmup]
    ops_by_kind = [[Op(kind, j) for j in range(N)] for kind in _KINDS]
    cost = [stage_op_costs(costs, s) for s in range(S)]
    ready = [[0, 0, 0] for _ in range(S)]  # per stage: ready count of F, B, W
    done = [[0, 0, 0] for _ in range(S)]  # per stage: issued count of F, B, W
    running = [-1] * S  # kind code of the op in progress, -1 when idle
    live = [0] * S  # per stage: micro-batches in flight, in half units (``activations``)
    orders: list[list[Op]] = [[] for _ in range(S)]
    ready[0][F] = N  # stage 0's forwards are all ready at time 0
    events: list[tuple[float, int, int, int]] = []  # (time, seq, stage, kind or _FINISH)
    seq = 0
    now: float = 0
    dirty = set(range(S))
    last = S - 1
    while True:
        for s in dirty:
            if running[s] >= 0:
                continue
            can_f = f_fits(live[s], activation_cap)
            if rule == "gpipe":
                k = _pick_gpipe(ready[s], done[s], N, can_f)
            else:
                k = _pick(ready[s], done[s], None if warmup is None else warmup[s], can_f)
            if k < 0:
                continue
            orders[s].append(ops_by_kind[k][done[s][k]])
            done[s][k] += 1
            live[s] += HALVES[k]
            running[s] = k
            seq += 1
            heapq.heappush(events, (_instant(now + cost[s][k]), seq, s, _FINISH))
        if not events:
            break
        now = events[0][0]
        dirty = set()
        while events and events[0][0] == now:
            _, _, s, k = heapq.heappop(events)
            dirty.add(s)
            if k != _FINISH:
                ready[s][k] += 1
                continue
            k, running[s] = running[s], -1
            # What the finished op makes ready: same-stage ops at once, neighbours after delay.
            if k == F:
                if s == last:
                    ready[s][B] += 1
                else:
                    seq += 1
                    heapq.heappush(events, (_instant(now + delays[s]), seq, s + 1, F))
            elif k == B:
                ready[s][W] += 1
                if s > 0:
                    seq += 1
                    heapq.heappush(events, (_instant(now + delays[s - 1]), seq, s - 1, B))
    for s in range(S):
        if len(orders[s]) != 3 * N:
            raise PlanningError(
                f"warm-up {warmup} deadlocks: stage {s} stops after {len(orders[s])} of "
                f"{3 * N} ops"
            )
    schedule = Schedule(tuple(tuple(o) for o in orders), N)
    return PolicyRun(schedule, now)


def _pick(ready: list[int], done: list[int], warm: int | None, can_f: bool) -> int:
    """The kind code the idle stage runs next under ``greedy``, or -1 to wait."""
    if warm is not None:
        if done[F] < warm:
            return F if ready[F] > done[F] else -1
        if done[B] == 0:
            return B if ready[B] > 0 else -1
    if ready[B] > done[B]:
        return B
    if can_f and ready[F] > done[F]:
        return F
    if ready[W] > done[W]:
        return W
    return -1


def _pick_gpipe(ready: list[int], done: list[int], num_microbatches: int, can_f: bool) -> int:
    """The kind code the idle stage runs next under ``gpipe``, or -1 to wait for it.

    The queued ops are the next F (unless all ran or the cap holds it back), the next B whose
    F ran here, and the next W whose B ran; the first of F, B, W queued is the one to run.
    """
    if can_f and done[F] < num_microbatches:
        return F if ready[F] > done[F] else -1
    if done[B] < done[F]:
        return B if ready[B] > done[B] else -1
    if done[W] < done[B]:
        return W  # its B ran on this stage, so it is ready
    return -1


def _check_warmup(warmup: list[int], num_stages: int, num_microbatches: int) -> None:
    if len(warmup) != num_stages:
        raise PlanningError(f"warm-up {warmup}: need one count per stage ({num_stages})")
    for s, w in enumerate(warmup):
        if not 1 <= w <= num_microbatches:
            raise PlanningError(
                f"warm-up of stage {s} is {w}: must be between 1 and N={num_microbatches}"
            )
        if s > 0 and w > warmup[s - 1]:
            raise PlanningError(
                f"warm-up {warmup}: stage {s} holds more forwards than stage {s - 1} "
                "(it would wait for forwards that never come)"
            )
