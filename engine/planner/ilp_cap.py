"""Warm starts that respect an activation cap (``activations``: F +1, B and W -0.5 each).

The given plans may break the cap, so the ILP needs a capped first incumbent: the greedy
policy planned under the cap, the plans repaired to the cap (each stage on its own), or a
plain capped order as the fallback. The repairs keep at most K micro-batches between F and W,
stricter than the cap, so they fit it too. Candidates are checked by replaying them; the
fastest one that runs wins.
"""

from __future__ import annotations

from collections import deque

from engine.planner.activations import inflight_peaks
from engine.planner.costs import StageCosts
from engine.planner.errors import PlanningError
from engine.planner.ir import Op, OpKind, Schedule
from engine.planner.policy import run_policy
from engine.planner.simulate import simulate


def capped_schedule(S: int, N: int, cap: int) -> Schedule:
    """A deadlock-free order holding at most ``cap`` micro-batches per stage: warm-up
    min(cap, S - s) forwards, then B j, W j, F j+w."""
    stages = []
    for s in range(S):
        w = min(cap, S - s, N)
        ops = [Op(OpKind.F, j) for j in range(w)]
        for j in range(N):
            ops += [Op(OpKind.B, j), Op(OpKind.W, j)]
            if j + w < N:
                ops.append(Op(OpKind.F, j + w))
        stages.append(tuple(ops))
    return Schedule(tuple(stages), N)


def repair_to_cap(ops: tuple[Op, ...], cap: int) -> tuple[Op, ...]:
    """One stage's order changed to hold at most ``cap`` micro-batches: a forward that would
    exceed the cap first pulls the oldest due W forward, or waits for the next B's W.
    W has no consumer, so moving it earlier cannot block another stage; a delayed F can,
    which the caller finds by replaying."""
    out: list[Op] = []
    due: deque[Op] = deque()  # W's whose B is out, oldest first
    waiting: deque[Op] = deque()  # F's held back by the cap
    live = 0
    for op in ops:
        if op.kind is OpKind.W:
            while due and due[0].mb <= op.mb:
                out.append(due.popleft())
                live -= 1
        elif op.kind is OpKind.B:
            out.append(op)
            due.append(Op(OpKind.W, op.mb))
        else:
            waiting.append(op)
        while waiting:
            if live < cap:
                out.append(waiting.popleft())
                live += 1
            elif due:
                out.append(due.popleft())
                live -= 1
            else:
                break
    out.extend(due)
    return tuple(out)


def capped_warm_start(
    S: int, N: int, costs: StageCosts, delays: tuple[float, ...], cap: int,
    plans: list[Schedule],
) -> Schedule:
    """The fastest runnable capped order among the greedy policy planned under the cap,
    ``plans`` repaired to the cap, the greedy policy with warm-up min(cap, S - s) repaired,
    and ``capped_schedule``."""
    warm = [min(cap, S - s, N) for s in range(S)]
    bases = [*plans, run_policy(S, N, costs, delays, warm).schedule]
    candidates = [capped_schedule(S, N, cap)]
    candidates.append(run_policy(S, N, costs, delays, activation_cap=cap).schedule)
    for plan in bases:
        candidates.append(Schedule(tuple(repair_to_cap(ops, cap) for ops in plan.stages), N))
    best, best_t = candidates[0], simulate(candidates[0], costs, delays).iteration_time
    for cand in candidates[1:]:
        if max(inflight_peaks(cand)) > cap:
            continue
        try:
            t = simulate(cand, costs, delays).iteration_time
        except PlanningError:  # the repair delayed a forward another stage waits on
            continue
        if t < best_t:
            best, best_t = cand, t
    return best
