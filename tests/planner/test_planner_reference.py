"""The event-driven simulator and policy against simple time-stepped references written here.

The references advance a clock one unit at a time (integer costs), which is slow but obviously
right; the planner's code must agree op for op on random small instances.
"""

from __future__ import annotations

import random

import pytest

from engine.planner.costs import StageCosts
from engine.planner.generators import generate
from engine.planner.ir import Op, OpKind, Schedule
from engine.planner.policy import run_policy
from engine.planner.simulate import simulate


def _dep(stage, op, S):
    """(stage, kinds that satisfy it, link delay index or None) that makes ``op`` ready."""
    if op.kind is OpKind.F:
        return None if stage == 0 else (stage - 1, {OpKind.F}, stage - 1)
    if op.kind is OpKind.W:
        return (stage, {OpKind.B}, None)
    if stage == S - 1:
        return (stage, {OpKind.F}, None)
    return (stage + 1, {OpKind.B, OpKind.BW}, stage)


def _cost(costs, stage, kind):
    return {
        OpKind.F: costs.tf[stage],
        OpKind.B: costs.tb[stage],
        OpKind.W: costs.tw[stage],
        OpKind.BW: costs.tb[stage] + costs.tw[stage],
    }[kind]


def _ready(stage, op, S, ends, delays, t):
    dep = _dep(stage, op, S)
    if dep is None:
        return True
    src, kinds, link = dep
    end = next((ends[(src, k, op.mb)] for k in kinds if (src, k, op.mb) in ends), None)
    return end is not None and end + (delays[link] if link is not None else 0) <= t


def stepped_replay(schedule, costs, delays):
    """Time-stepped replay: at each tick an idle stage starts its next op if it is ready."""
    S = schedule.num_stages
    ends, times = {}, {}
    pos, busy_until = [0] * S, [0] * S
    running = [None] * S
    t = 0
    while any(pos[s] < len(schedule.stages[s]) or running[s] for s in range(S)):
        for s in range(S):
            if running[s] is not None and busy_until[s] == t:
                ends[(s, running[s].kind, running[s].mb)] = t
                running[s] = None
        for s in range(S):
            if running[s] is None and pos[s] < len(schedule.stages[s]):
                op = schedule.stages[s][pos[s]]
                if _ready(s, op, S, ends, delays, t):
                    running[s], pos[s] = op, pos[s] + 1
                    busy_until[s] = t + _cost(costs, s, op.kind)
                    times[(s, op)] = (t, busy_until[s])
        t += 1
        assert t < 100_000, "reference replay did not finish"
    return times


def stepped_greedy(S, N, costs, delays):
    """Time-stepped greedy policy: an idle stage picks a ready op, B > F > W, lowest mb."""
    ends, orders = {}, [[] for _ in range(S)]
    todo = [{Op(k, j) for k in (OpKind.F, OpKind.B, OpKind.W) for j in range(N)} for _ in range(S)]
    running, busy_until = [None] * S, [0] * S
    prio = {OpKind.B: 0, OpKind.F: 1, OpKind.W: 2}
    t = 0
    while any(todo) or any(r is not None for r in running):
        for s in range(S):
            if running[s] is not None and busy_until[s] == t:
                ends[(s, running[s].kind, running[s].mb)] = t
                running[s] = None
        for s in range(S):
            if running[s] is None:
                ready = [op for op in todo[s] if _ready(s, op, S, ends, delays, t)]
                if ready:
                    op = min(ready, key=lambda o: (prio[o.kind], o.mb))
                    todo[s].remove(op)
                    orders[s].append(op)
                    running[s], busy_until[s] = op, t + _cost(costs, s, op.kind)
        t += 1
    return Schedule(tuple(tuple(o) for o in orders), N), t - 1


def random_topological_schedule(S, N, rng, split=True):
    """A random deadlock-free schedule: a random serial execution of the dependency graph,
    projected per stage (so micro-batches may run out of order)."""
    kinds = (OpKind.F, OpKind.B, OpKind.W) if split else (OpKind.F, OpKind.BW)
    todo = {(s, Op(k, j)) for s in range(S) for k in kinds for j in range(N)}
    done_keys, orders = set(), [[] for _ in range(S)]
    while todo:
        avail = [
            (s, op)
            for s, op in todo
            if (dep := _dep(s, op, S)) is None
            or any((dep[0], k, op.mb) in done_keys for k in dep[1])
        ]
        s, op = rng.choice(sorted(avail, key=lambda x: (x[0], str(x[1]))))
        todo.remove((s, op))
        done_keys.add((s, op.kind, op.mb))
        orders[s].append(op)
    return Schedule(tuple(tuple(o) for o in orders), N)


def _random_case(rng):
    S, N = rng.randint(1, 4), rng.randint(1, 6)
    costs = StageCosts(*(tuple(rng.randint(1, 7) for _ in range(S)) for _ in range(3)))
    delays = tuple(rng.choice([0, 0, rng.randint(1, 15)]) for _ in range(S - 1))
    return S, N, costs, delays


@pytest.mark.parametrize("seed", range(40))
def test_replay_matches_time_stepped_reference(seed):
    rng = random.Random(seed)
    S, N, costs, delays = _random_case(rng)
    schedules = [
        random_topological_schedule(S, N, rng, split=True),
        random_topological_schedule(S, N, rng, split=False),
        generate("1f1b", S, N, costs),
        generate("zb", S, N, costs),
    ]
    for sched in schedules:
        result = simulate(sched, costs, delays)
        got = {(t.stage, t.op): (t.start, t.end) for t in result.ops}
        ref = stepped_replay(sched, costs, delays)
        assert got == ref, sched.to_text()
        assert result.iteration_time == max(end for _, end in ref.values())


@pytest.mark.parametrize("seed", range(30))
def test_greedy_policy_matches_time_stepped_reference(seed):
    rng = random.Random(1000 + seed)
    S, N, costs, delays = _random_case(rng)
    ref_schedule, ref_time = stepped_greedy(S, N, costs, delays)
    run = run_policy(S, N, costs, delays)
    assert run.schedule == ref_schedule
    assert run.iteration_time == ref_time
    assert simulate(run.schedule, costs, delays).iteration_time == ref_time
