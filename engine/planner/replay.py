"""Replay timing: each stage runs its op list strictly in order, each op as soon as it is ready
(PAPER.md 2) and the stage's previous op has ended.

Dataflow evaluation, not a time-stepped loop: an op's start is max(previous end on its stage,
its input's end + link delay), computed the moment its input is known. Every op is visited
once, so the cost is O(ops) whatever the time scale of the costs, and exact on integers.
"""

from __future__ import annotations

from engine.planner.costs import StageCosts
from engine.planner.errors import PlanningError
from engine.planner.ir import Op, OpKind, Schedule

# Kind codes used in the inner loops (ints are much cheaper to compare than Enum members).
F, B, W, BW = 0, 1, 2, 3


def stage_op_costs(costs: StageCosts, stage: int) -> tuple[float, float, float, float]:
    """Cost of F, B, W and BW (= B + W) on ``stage``, indexed by kind code."""
    tb, tw = costs.tb[stage], costs.tw[stage]
    return (costs.tf[stage], tb, tw, tb + tw)


def producer(stage: int, op: Op, num_stages: int) -> tuple[int, str] | None:
    """The (stage, op kind) whose end makes ``op`` ready, or None for stage 0's forwards.

    A backward on stage s waits for the backward (B or BW) of stage s+1; the last stage's
    backward waits for its own forward; a W waits for its own stage's B.
    """
    if op.kind is OpKind.F:
        return None if stage == 0 else (stage - 1, "F")
    if op.kind is OpKind.W:
        return (stage, "B")
    if stage == num_stages - 1:
        return (stage, "F")
    return (stage + 1, "B" if op.kind is OpKind.B else "BW")


Lowered = tuple[list[list[int]], list[list[int]]]


def lower(schedule: Schedule) -> Lowered:
    """Per stage, the kind codes and the micro-batches of its ops (the inner loops' form)."""
    f, b, w = OpKind.F, OpKind.B, OpKind.W
    kinds = [
        [F if (k := op.kind) is f else B if k is b else W if k is w else BW for op in ops]
        for ops in schedule.stages
    ]
    return kinds, [[op.mb for op in ops] for ops in schedule.stages]


def replay(
    schedule: Schedule,
    costs: StageCosts,
    delays: tuple[float, ...],
    lowered: Lowered | None = None,
) -> tuple[list[list[float]], list[list[float]]]:
    """Start and end of every op, per stage in list order.

    The schedule must be structurally valid (``validate.check_structure``); ``lowered`` is
    ``lower(schedule)`` when the caller has it. Raises ``PlanningError`` naming the stuck
    stage and op when the order deadlocks.
    """
    S, N = schedule.num_stages, schedule.num_microbatches
    kinds, mbs = lowered if lowered is not None else lower(schedule)
    cost = [stage_op_costs(costs, s) for s in range(S)]
    fend: list[list[float | None]] = [[None] * N for _ in range(S)]
    bend: list[list[float | None]] = [[None] * N for _ in range(S)]  # B or BW
    starts: list[list[float]] = [[0] * len(k) for k in kinds]
    ends: list[list[float]] = [[0] * len(k) for k in kinds]
    ptr = [0] * S
    free: list[float] = [0] * S
    work = list(range(S - 1, -1, -1))
    queued = [True] * S
    last = S - 1
    while work:
        s = work.pop()
        queued[s] = False
        p, t_free, n = ptr[s], free[s], len(kinds[s])
        ks, js, cs, st, en = kinds[s], mbs[s], cost[s], starts[s], ends[s]
        f_own, b_own = fend[s], bend[s]
        while p < n:
            k, j = ks[p], js[p]
            if k == F:
                if s == 0:
                    ready = 0
                else:
                    e = fend[s - 1][j]
                    if e is None:
                        break
                    ready = e + delays[s - 1]
            elif k == W:
                ready = b_own[j]
                if ready is None:
                    break
            elif s == last:
                ready = f_own[j]
                if ready is None:
                    break
            else:
                e = bend[s + 1][j]
                if e is None:
                    break
                ready = e + delays[s]
            t0 = t_free if t_free > ready else ready
            t_free = t0 + cs[k]
            st[p] = t0
            en[p] = t_free
            if k == F:
                f_own[j] = t_free
            elif k != W:
                b_own[j] = t_free
            p += 1
        if p != ptr[s]:
            ptr[s], free[s] = p, t_free
            for nb in (s - 1, s + 1):
                if 0 <= nb < S and not queued[nb] and ptr[nb] < len(kinds[nb]):
                    queued[nb] = True
                    work.append(nb)
    for s in range(S):
        if ptr[s] < len(kinds[s]):
            raise PlanningError(_deadlock_message(schedule, ptr))
    return starts, ends


def _deadlock_message(schedule: Schedule, ptr: list[int]) -> str:
    """Names a stuck stage on the cycle of waits, its op, and where the op's input is stuck."""
    S = schedule.num_stages
    stuck = [s for s in range(S) if ptr[s] < len(schedule.stages[s])]

    def waits_on(s: int) -> tuple[Op, int, str]:
        op = schedule.stages[s][ptr[s]]
        src = producer(s, op, S)
        assert src is not None  # stage 0's forwards never block
        return op, src[0], src[1]

    # Follow "stage s waits on stage t" from the first stuck stage until a stage repeats: the
    # repeated stage is on the cycle that causes the deadlock.
    s, visited = stuck[0], set()
    while s not in visited:
        visited.add(s)
        _, nxt, _ = waits_on(s)
        if ptr[nxt] >= len(schedule.stages[nxt]):
            break
        s = nxt
    op, src_stage, src_kind = waits_on(s)
    src_ops = schedule.stages[src_stage]
    if src_stage == s:
        at = f"stage {s} runs it only later"
    elif ptr[src_stage] < len(src_ops):
        at = f"stage {src_stage} is stuck at {src_ops[ptr[src_stage]]} (position {ptr[src_stage]})"
    else:
        at = f"stage {src_stage} never runs it"
    return (
        f"schedule deadlocks: stage {s} op {op} (position {ptr[s]}) waits for "
        f"{src_kind}{op.mb} of stage {src_stage}, but {at}"
    )
