"""The pure per-iteration decision of the five methods (no processes, no torch.distributed)."""

from __future__ import annotations

import math

import pytest

from engine.adapter import Adapter, Basis
from engine.healthy_plan import healthy_schedule
from engine.methods import METHODS, resolve_method
from engine.planner.costs import StageCosts
from engine.planner.generators import generate
from injector.trace import Fault, Trace, parse_trace

ADAPT = METHODS["pipemorph"].adapt_generator  # the generator PipeMorph re-plans with

S, N = 4, 12
PROFILED = StageCosts((30.0, 32.0, 31.0, 29.0), (40.0, 41.0, 39.0, 42.0), (20.0,) * 4)
TRACE = parse_trace("3;2_3;0.06\n6;;0\n8;1_2;inf\n", S)


def run(
    method_id: str,
    iterations: int = 10,
    profiled: StageCosts | None = PROFILED,
    trace: Trace = TRACE,
):
    """Feeds the trace through an Adapter the way FaultPlanSource does (one-iteration lag)."""
    adapter = Adapter(resolve_method(method_id), S, N)
    known = (0.0,) * (S - 1)
    plans = []
    for it in range(iterations):
        fault = trace.fault_at(it)
        plans.append(adapter.plan(it, fault, Basis(known, "injected"), profiled))
        known = fault.link_delays_s(S)
    return plans


def test_zb_never_changes_and_never_offloads():
    plans = run("zb")
    zb = healthy_schedule(resolve_method("zb"), S, N)
    assert zb.warmup() == [7, 5, 3, 1]
    assert all(p.schedule == zb and not p.offload and p.planned_costs is None for p in plans)
    assert plans[3].link_delays_s == (0.0, 0.0, 0.06)  # the engine still injects the delay
    assert plans[8].link_delays_s == (0.0, math.inf, 0.0)  # ... and the crash
    assert plans[8].link_delays_s == (0.0, math.inf, 0.0)


def test_1f1b_is_static_1f1b():
    plans = run("1f1b")
    static = generate("1f1b", S, N, PROFILED)
    assert not static.split_backward
    assert all(p.schedule == static and not p.offload for p in plans)
    assert plans[4].generator == "1f1b"


def test_pipemorph_cpu_offloads_exactly_while_a_link_is_slow():
    plans = run("pipemorph-cpu")
    assert [p.offload for p in plans] == [False] * 3 + [True] * 3 + [False] * 2 + [True] * 2
    zb = healthy_schedule(resolve_method("zb"), S, N)
    assert all(p.schedule == zb for p in plans)


def test_all_cpu_always_offloads():
    assert all(p.offload for p in run("all-cpu"))


def test_pipemorph_replans_from_the_next_iteration_and_recovers():
    plans = run("pipemorph")
    zb = healthy_schedule(resolve_method("zb"), S, N)
    # iteration 3: the fault appears; offload on at once, the schedule still the healthy one
    assert plans[3].offload and plans[3].schedule == zb and plans[3].planned_costs is None
    # iteration 4: re-planned with the profiled costs and the fault's delays (ms)
    expected = generate(ADAPT, S, N, PROFILED, (0.0, 0.0, 60.0))
    assert plans[4].schedule == expected and plans[4].planned_costs == PROFILED
    assert plans[4].fault["planned_for_ms"] == [0.0, 0.0, 60.0]
    assert plans[4].generator == ADAPT and plans[4].fault["planned_at"] == 4
    # upstream stages hold more in-flight forwards than ZB; the last stage keeps one
    w, wz = expected.warmup(), zb.warmup()
    assert all(w[s] > wz[s] for s in range(S - 1)) and w[-1] == 1
    assert plans[5].schedule == expected  # the plan holds while the fault does
    # iteration 6: healthy again; offload off now, ZB again from iteration 7
    assert not plans[6].offload and plans[6].schedule == expected
    assert plans[7].schedule == zb and plans[7].planned_costs is None


def test_pipemorph_keeps_its_plan_while_profiled_costs_drift():
    adapter = Adapter(resolve_method("pipemorph"), S, N)
    basis = Basis((0.0, 0.0, 0.06), "injected")
    fault = TRACE.fault_at(4)
    first = adapter.plan(4, fault, basis, PROFILED)
    drift = StageCosts(tuple(t * 1.3 for t in PROFILED.tf), PROFILED.tb, PROFILED.tw)
    again = adapter.plan(5, fault, basis, drift)
    assert again.schedule == first.schedule and again.planned_costs == PROFILED


def test_pipemorph_survives_a_crash_with_a_large_finite_plan():
    plans = run("pipemorph")
    crash = plans[9]  # crash from 8, planned from 9
    assert crash.offload and crash.link_delays_s[1] == math.inf
    planned = crash.fault["planned_for_ms"]
    assert planned[0] == 0.0 and planned[2] == 0.0 and math.isfinite(planned[1])
    assert planned[1] >= 60.0  # at least the worst delay seen (60 ms earlier in the trace)
    assert any("is down" in n for n in crash.fault["notes"])
    assert crash.schedule.warmup()[0] > healthy_schedule(resolve_method("zb"), S, N).warmup()[0]


def test_pipemorph_without_a_profile_keeps_the_healthy_plan():
    plans = run("pipemorph", profiled=None)
    zb = healthy_schedule(resolve_method("zb"), S, N)
    assert all(p.schedule == zb for p in plans)
    assert plans[4].offload and "no profiled costs" in plans[4].fault["notes"][0]


@pytest.mark.parametrize("method_id", ["1f1b", "zb", "pipemorph-cpu", "pipemorph", "all-cpu"])
def test_every_rank_gets_the_same_plan(method_id):
    """Two adapters fed identical inputs (two ranks) decide identically, iteration by iteration."""
    a, b = run(method_id), run(method_id)
    assert [(p.schedule, p.offload, p.link_delays_s) for p in a] == [
        (p.schedule, p.offload, p.link_delays_s) for p in b
    ]


# -- NIC crash and per-link delays -------------------------------------------------------------

NIC = parse_trace("3;2_3;0.06\n6;;inf\n", S)  # a slow link, then the NIC dies
ALL_DOWN = Trace((TRACE.fault_at(3), Fault.uniform(((0, 1), (1, 2), (2, 3)), math.inf, 6, 2)))


@pytest.mark.parametrize("method_id", ["pipemorph", "pipemorph-cpu"])
def test_nic_crash_puts_all_traffic_on_the_delegates(method_id):
    plans = run(method_id, iterations=9, trace=NIC)
    assert [p.offload for p in plans] == [False] * 3 + [True] * 6
    assert all(p.link_delays_s == (math.inf,) * 3 for p in plans[6:])  # the inline path fails
    assert all(p.fault["injected"]["nic_crash"] for p in plans[6:])


def test_zb_and_1f1b_keep_the_inline_path_under_a_nic_crash():
    for method_id in ("zb", "1f1b"):
        plans = run(method_id, iterations=8, trace=NIC)
        # no delegates: the engine's inline send on an inf link raises LinkDownError
        assert not any(p.offload for p in plans) and plans[6].link_delays_s == (math.inf,) * 3


def test_pipemorph_plans_a_nic_crash_like_a_crash_of_every_link():
    nic, down = run("pipemorph", 9, trace=NIC), run("pipemorph", 9, trace=ALL_DOWN)
    zb = healthy_schedule(resolve_method("zb"), S, N)
    assert nic[6].schedule == nic[5].schedule  # the crash iteration keeps the previous plan
    for a, b in zip(nic[7:], down[7:]):
        assert a.schedule == b.schedule and a.link_delays_s == b.link_delays_s
        assert a.fault["planned_for_ms"] == b.fault["planned_for_ms"]
    planned = nic[7].fault["planned_for_ms"]
    # every link planned as a crashed one: the worst delay seen (60 ms) or 4 forwards, finite
    assert all(math.isfinite(x) and x >= 60.0 for x in planned) and len(set(planned)) == 1
    assert sum("is down" in n for n in nic[7].fault["notes"]) == S - 1
    w, wz = nic[7].schedule.warmup(), zb.warmup()
    assert all(w[s] > wz[s] for s in range(S - 1)) and w[-1] == 1


def test_a_later_line_replaces_a_nic_crash():
    plans = run("pipemorph", 10, trace=parse_trace("2;;inf\n5;;0\n", S))
    zb = healthy_schedule(resolve_method("zb"), S, N)
    assert plans[4].link_delays_s == (math.inf,) * 3 and plans[4].schedule != zb
    assert not plans[5].offload and plans[5].link_delays_s == (0.0,) * 3
    assert plans[6].schedule == zb


def test_per_link_delays_reach_the_engine_and_the_plan():
    trace = parse_trace("2;0_1,2_3;0.02,0.07\n4;1_2,2_3;0.05,inf\n", S)
    plans = run("pipemorph", 6, trace=trace)
    assert plans[2].link_delays_s == (0.02, 0.0, 0.07) and plans[2].offload
    assert plans[3].fault["planned_for_ms"] == [20.0, 0.0, 70.0]
    assert plans[3].schedule == generate(ADAPT, S, N, PROFILED, (20.0, 0.0, 70.0))
    assert plans[4].link_delays_s == (0.0, 0.05, math.inf)
    planned = plans[5].fault["planned_for_ms"]
    assert planned[0] == 0.0 and planned[1] == 50.0 and planned[2] >= 70.0  # down: worst seen
    injected = plans[5].fault["injected"]
    assert injected["links"] == "1_2,2_3" and injected["delays_s"] == [0.05, None]
    assert run("zb", 6, trace=trace)[2].link_delays_s == (0.02, 0.0, 0.07)
