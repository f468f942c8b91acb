"""Time windows of every op for the ILP: earliest starts (heads), minimal tails, lower bound.

Ops are keyed ``(stage, kind, mb)`` with kind 0=F, 1=B, 2=W. The windows use only valid
reasoning, so they hold for every feasible schedule in which each stage runs the ops of one
kind in micro-batch order (the ILP's normal form, see ``ilp_model``):

- precedences with link delays (PAPER.md 2) and the same-kind chains F0<F1<..., B0<B1<...;
- stage load: before B(s,j) the stage has run F(s,0..j) and B(s,0..j-1); after B(s,j) starts
  it still runs B(s,j..) and W(s,j..); and so on for F and W.

``head[op]`` is a lower bound on the op's start, ``tail[op]`` a lower bound on the time from
its start to the end of the iteration. ``lower_bound`` is the larger of max(head + tail) and,
per stage, the one-machine bound (preemptive Jackson schedule of the stage's ops with those
heads and tails), the classic job-shop bound; on most random instances it already meets the
heuristic's makespan, which then needs no search.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from engine.planner.costs import StageCosts

F, B, W = 0, 1, 2
OpKey = tuple[int, int, int]


@dataclass(frozen=True)
class Windows:
    """Heads, tails and the resulting makespan lower bound of one instance."""

    head: dict[OpKey, float]
    tail: dict[OpKey, float]
    stage_start: tuple[float, ...]  # earliest time any op of the stage can start
    lower_bound: float


def durations(costs: StageCosts, stage: int) -> tuple[float, float, float]:
    """(tF, tB, tW) of one stage."""
    return costs.tf[stage], costs.tb[stage], costs.tw[stage]


def compute_windows(
    num_stages: int, num_microbatches: int, costs: StageCosts, delays: tuple[float, ...],
    activation_cap: int | None = None,
) -> Windows:
    """Heads and tails by longest paths over the precedence DAG plus stage-load terms.

    Every edge goes to the same or a later micro-batch, so one pass per micro-batch (F up the
    stages, B down, then W) is a topological order; ``activation_cap`` K adds the edges
    B(s, i-K) -> F(s, i): a stage may issue F(s, i) only with at most K-1 micro-batches in
    flight (``activations``: B and W free half each), so at least i+1-K of its Bs have run.
    """
    S, N, K = num_stages, num_microbatches, activation_cap
    stage_start = []
    acc = 0.0
    for s in range(S):
        stage_start.append(acc)
        if s < S - 1:
            acc += costs.tf[s] + delays[s]
    head: dict[OpKey, float] = {}
    for j in range(N):
        for s in range(S):
            tf, tb, tw = durations(costs, s)
            cands = [stage_start[s] + j * tf]
            if s > 0:
                cands.append(head[(s - 1, F, j)] + costs.tf[s - 1] + delays[s - 1])
            if j > 0:
                cands.append(head[(s, F, j - 1)] + tf)
            if K is not None and j >= K:
                cands.append(head[(s, B, j - K)] + tb)
            head[(s, F, j)] = max(cands)
        for s in reversed(range(S)):
            tf, tb, tw = durations(costs, s)
            cands = [head[(s, F, j)] + tf, stage_start[s] + (j + 1) * tf + j * tb]
            if s < S - 1:
                cands.append(head[(s + 1, B, j)] + costs.tb[s + 1] + delays[s])
            if j > 0:
                cands.append(head[(s, B, j - 1)] + tb)
            head[(s, B, j)] = max(cands)
        for s in range(S):
            tf, tb, tw = durations(costs, s)
            cands = [head[(s, B, j)] + tb, stage_start[s] + (j + 1) * (tf + tb) + j * tw]
            if j > 0:
                cands.append(head[(s, W, j - 1)] + tw)
            head[(s, W, j)] = max(cands)

    tail: dict[OpKey, float] = {}
    for j in reversed(range(N)):
        for s in range(S):
            tf, tb, tw = durations(costs, s)
            cands = [(N - j) * tw]
            if j < N - 1:
                cands.append(tw + tail[(s, W, j + 1)])
            tail[(s, W, j)] = max(cands)
        for s in range(S):
            tf, tb, tw = durations(costs, s)
            cands = [tb + tail[(s, W, j)], (N - j) * (tb + tw)]
            if j < N - 1:
                cands.append(tb + tail[(s, B, j + 1)])
            if s > 0:
                cands.append(tb + delays[s - 1] + tail[(s - 1, B, j)])
            if K is not None and j + K < N:
                cands.append(tb + tail[(s, F, j + K)])
            tail[(s, B, j)] = max(cands)
        for s in reversed(range(S)):
            tf, tb, tw = durations(costs, s)
            cands = [tf + tail[(s, B, j)], (N - j) * (tf + tb + tw)]
            if j < N - 1:
                cands.append(tf + tail[(s, F, j + 1)])
            if s < S - 1:
                cands.append(tf + delays[s] + tail[(s + 1, F, j)])
            tail[(s, F, j)] = max(cands)

    lower_bound = max(head[k] + tail[k] for k in head)
    for s in range(S):
        d = durations(costs, s)
        jobs = [
            (head[(s, k, j)], d[k], tail[(s, k, j)] - d[k]) for k in (F, B, W) for j in range(N)
        ]
        lower_bound = max(lower_bound, one_machine_bound(jobs))
    return Windows(head, tail, tuple(stage_start), lower_bound)


def one_machine_bound(jobs: list[tuple[float, float, float]]) -> float:
    """Makespan bound of one stage's ops as (release, duration, time-after-end) triples: the
    preemptive Jackson schedule (always run the released op with the longest time after it),
    optimal for the preemptive relaxation of one machine with heads and tails."""
    jobs = sorted(jobs)
    ready: list[list[float]] = []  # heap of [-time_after, remaining duration]
    t, i, best = 0.0, 0, 0.0
    while i < len(jobs) or ready:
        if not ready and t < jobs[i][0]:
            t = jobs[i][0]
        while i < len(jobs) and jobs[i][0] <= t:
            r, p, q = jobs[i]
            heapq.heappush(ready, [-q, p])
            i += 1
        job = ready[0]
        run = min(job[1], (jobs[i][0] if i < len(jobs) else math.inf) - t)
        t += run
        if run == job[1]:
            heapq.heappop(ready)
            best = max(best, t - job[0])
        else:
            job[1] -= run  # preempted by the next release (the heap key is unchanged)
    return best


def trivial_windows(num_stages: int, num_microbatches: int, costs: StageCosts) -> Windows:
    """Windows that know nothing (start >= 0, tail = own duration, bound 0): the unstrengthened
    model, used to check that the real windows never cut off an optimum."""
    head, tail = {}, {}
    for s in range(num_stages):
        d = durations(costs, s)
        for k in (F, B, W):
            for j in range(num_microbatches):
                head[(s, k, j)] = 0.0
                tail[(s, k, j)] = d[k]
    return Windows(head, tail, (0.0,) * num_stages, 0.0)
