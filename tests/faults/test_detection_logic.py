"""Detection from link observations and the single-process plan source against a real
redis-server (trace publication, heartbeats, error reporting, detected re-planning)."""

from __future__ import annotations

import math
import random

import pytest

from engine.config import parse_config
from engine.detect import LinkDetector, combine, detected_delays_s, local_samples
from engine.errors import EngineConfigError
from engine.fault_plan import FaultPlanSource, make_plan_source
from engine.methods import METHODS, resolve_method
from engine.plan_source import LinkObservation, PlanContext
from engine.planner.costs import StageCosts
from injector.control import ControlClient
from injector.trace import Fault, load_trace, parse_trace

ADAPT = METHODS["pipemorph"].adapt_generator  # the generator PipeMorph re-plans with

S, N = 4, 12
PROFILED = StageCosts.uniform(S, 30.0, 40.0, 20.0)


def observations(iteration: int, delays_ms: tuple[float, ...], seed: int = 0):
    """One iteration's received messages on every link and direction: base latency ~0.3 ms,
    the link's delay, and for most messages a late receiver (up to 80 ms extra)."""
    rng = random.Random(seed * 1000 + iteration)
    out = []
    for link, delay in enumerate(delays_ms):
        for direction in ("F", "B"):
            for mb in range(N):
                sent = mb * 35.0 + rng.uniform(0, 5)
                late = 0.0 if rng.random() < 0.4 else rng.uniform(0, 80)
                transit = 0.3 + rng.uniform(0, 0.2) + delay + late
                out.append(LinkObservation(iteration, link, direction, mb, sent, sent + transit))
    return out


def verdict(delays_ms: tuple[float, ...], detector: LinkDetector, iteration: int):
    pooled = combine(local_samples(observations(iteration, delays_ms)), S - 1)
    return detector.update(iteration, pooled, min(PROFILED.tf))


def test_detector_finds_the_slow_link_within_20_percent():
    det = LinkDetector(S - 1)
    healthy = verdict((0.0, 0.0, 0.0), det, 0)
    assert healthy.slow_links == () and all(e == 0.0 for e in healthy.excess_ms)
    for delay in (20.0, 60.0, 120.0):
        v = verdict((0.0, 0.0, delay), det, 1)
        assert v.slow_links == (2,)
        assert abs(v.excess_ms[2] - delay) <= 0.2 * delay
    both = verdict((60.0, 0.0, 60.0), det, 2)
    assert both.slow_links == (0, 2)
    assert verdict((0.0, 0.0, 0.0), det, 3).slow_links == ()  # recovery is seen too


def test_a_few_late_messages_are_not_a_slow_link():
    det = LinkDetector(S - 1)
    verdict((0.0, 0.0, 0.0), det, 0)
    obs = [o for o in observations(1, (0.0, 0.0, 0.0))]
    # two messages on link 1 arrive 50 ms late: below MIN_MESSAGES, so not significant
    obs = [o for o in obs if o.link != 1] + [
        LinkObservation(1, 1, "F", mb, 0.0, 50.0 + mb) for mb in range(2)
    ] + [LinkObservation(1, 1, "B", mb, 0.0, 0.3) for mb in range(5)]
    v = det.update(1, combine(local_samples(obs), S - 1), 30.0)
    assert v.slow_links == ()


def test_replan_only_on_a_significant_change():
    det = LinkDetector(S - 1)
    verdict((0.0, 0.0, 0.0), det, 0)
    first = detected_delays_s(verdict((0.0, 0.0, 60.0), det, 1), (0.0, 0.0, 0.0))
    assert first[2] > 0
    noisy = detected_delays_s(verdict((0.0, 0.0, 62.0), det, 2), first)
    assert noisy == first  # a 3% wobble keeps the plan
    moved = detected_delays_s(verdict((0.0, 0.0, 120.0), det, 3), first)
    assert moved[2] > first[2] * 1.5


def ctx(method: str, **kw) -> PlanContext:
    return PlanContext(resolve_method(method), S, N, rank=0, delegates=2, **kw)


def test_plan_source_publishes_trace_faults_and_beats(redis_server, clean_env, tmp_path):
    clean_env.setenv("PMCTL_CONTROL_PASSWORD_FILE", str(redis_server.password_file))
    trace = tmp_path / "t.trace"
    trace.write_text("2;2_3;0.06\n4;;0\n")
    src = make_plan_source(
        ctx("pipemorph", trace=load_trace(trace, S), control_url=redis_server.url, run_id="ps1")
    )
    watcher = ControlClient(redis_server.url, "ps1")
    plans = []
    for it in range(6):
        plans.append(src.plan(it, PROFILED))
        published = watcher.read_fault()
        assert published == src.trace.fault_at(it) or (it < 2 and published.healthy)
        assert watcher.heartbeats()[0]["iteration"] == it
    assert [p.offload for p in plans] == [False, False, True, True, False, False]
    assert plans[3].generator == ADAPT and plans[5].planned_costs is None
    src.finish("link 2 (2_3) is down")
    assert watcher.errors()[0]["message"] == "link 2 (2_3) is down"
    assert watcher.heartbeats()[0]["phase"] == "failed"


def test_external_fault_overrides_and_detection_replans(redis_server, clean_env):
    clean_env.setenv("PMCTL_CONTROL_PASSWORD", redis_server.password)
    src = make_plan_source(
        ctx("pipemorph", control_url=redis_server.url, run_id="ps2", detect=True)
    )
    pmctl = ControlClient(redis_server.url, "ps2")

    delays = {it: (0.0, 0.0, 0.0) if it < 3 else (0.0, 0.0, 80.0) for it in range(6)}
    plans = []
    for it in range(6):
        if it == 3:  # an operator injects a fault mid-run through the control plane
            pmctl.publish_fault(Fault.uniform(((2, 3),), 0.08, since_iteration=3, epoch=1))
        plans.append(src.plan(it, PROFILED))
        src.observe(observations(it, delays[it]))
    assert plans[3].offload and plans[3].fault["injected"]["links"] == "2_3"
    # measured at the end of 3, re-planned for 4 from the detected value, not the injected one
    got = plans[4].fault
    assert got["plan_basis"] == "detected" and got["detect_lag_iterations"] == 1
    assert abs(got["detected_delay_ms"][0] - 80.0) <= 16.0 and got["injected_delay_ms"] == 80.0
    assert got["planned_for_ms"][2] == got["detected_delay_ms"][0]
    assert pmctl.read_detected()["fault"].links == ((2, 3),)
    src.finish(None)
    assert pmctl.heartbeats()[0]["phase"] == "done" and pmctl.errors() == []


def test_bad_trace_or_password_is_a_one_line_config_error(redis_server, clean_env, tmp_path):
    bad = tmp_path / "bad.trace"
    bad.write_text("3;2_3;0.05\n2;;0\n")
    clean_env.setenv("WORLD_SIZE", str(S))
    with pytest.raises(EngineConfigError, match=r"bad\.trace: line 2: .*must increase"):
        parse_config(["--preset", "tiny", "--trace", str(bad)])
    clean_env.setenv("PMCTL_CONTROL_PASSWORD", "wrong")
    with pytest.raises(EngineConfigError, match="rejected the password"):
        make_plan_source(ctx("zb", control_url=redis_server.url))


def test_matches_is_the_detection_requirement():
    from engine.adapter import matches

    slow = Fault.uniform(((2, 3),), 0.05, since_iteration=3, epoch=1)
    assert matches(slow, (0.0, 0.0, 0.058), S) and not matches(slow, (0.0, 0.0, 0.061), S)
    assert not matches(slow, (0.01, 0.0, 0.05), S)  # a false positive elsewhere
    assert matches(Fault(since_iteration=6), (0.0, 0.0, 0.0), S)
    assert not matches(Fault.uniform(((2, 3),), float("inf"), 8, 2), (0.0, 0.0, 0.2), S)
    assert not matches(Fault(nic_crash=True, since_iteration=8), (0.2, 0.2, 0.2), S)
    per_link = Fault(((0, 1), (2, 3)), (0.03, 0.05), since_iteration=3)
    assert matches(per_link, (0.031, 0.0, 0.049), S)
    assert not matches(per_link, (0.05, 0.0, 0.05), S)  # each link against its own delay


class FakeClock:
    """Stands in for rank 0's monotonic clock (seconds, advanced by the test)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_time_trace_counts_seconds_from_the_fault_at_iteration(redis_server, clean_env):
    """Rank 0 starts the time trace's clock at plan(fault_at) and looks the snapshot up by the
    seconds since then; the snapshot's since_iteration is the iteration it first held, and it
    is published once per change."""
    clean_env.setenv("PMCTL_CONTROL_PASSWORD", redis_server.password)
    clock = FakeClock()
    trace = parse_trace("0.0;2_3;0.04\n1.0;0_1,2_3;0.03,0.01\n2.5;;inf\n", S)
    src = FaultPlanSource(ctx("pipemorph", trace=trace, fault_at=3), trace,
                          ControlClient(redis_server.url, "time1"), clock=clock)
    watcher = ControlClient(redis_server.url, "time1")
    step_s = {3: 0.5, 4: 0.25, 5: 0.25, 6: 0.5, 7: 1.0}  # wall time of each iteration (exact)
    plans = []
    for it in range(9):
        plans.append(src.plan(it, PROFILED))
        clock.now += 5.0 if it < 3 else step_s.get(it, 0.5)  # before fault_at: time ignored
    # 0..2 healthy (the slow pre-fault iterations do not count); 3 at 0.0 s; 4 at 0.5; 5 at
    # 0.75; 6 at 1.0 s (the second line, exactly); 7 at 1.5; 8 at 2.5 s (the NIC crash)
    assert all(p.link_delays_s == (0.0, 0.0, 0.0) and "trace_s" not in p.fault for p in plans[:3])
    assert [p.fault["trace_s"] for p in plans[3:]] == [0.0, 0.5, 0.75, 1.0, 1.5, 2.5]
    assert [p.link_delays_s for p in plans[3:8]] == [(0.0, 0.0, 0.04)] * 3 + [(0.03, 0.0, 0.01)] * 2
    assert plans[8].link_delays_s == (math.inf,) * 3 and plans[8].fault["injected"]["nic_crash"]
    sinces = [p.fault["injected"]["since_iteration"] for p in plans[3:]]
    assert sinces == [3, 3, 3, 6, 6, 8]
    # PipeMorph plans each snapshot from the iteration after it took effect
    assert plans[4].fault["planned_for_ms"] == [0.0, 0.0, 40.0]
    assert plans[7].fault["planned_for_ms"] == [30.0, 0.0, 10.0]
    published = watcher.read_fault()
    assert published.nic_crash and published.since_iteration == 8 and published.at_s == 2.5
    src.finish(None)


def test_time_trace_before_its_first_line_is_healthy_from_fault_at():
    clock = FakeClock()
    trace = parse_trace("1.5;1_2;0.02\n", S)
    src = FaultPlanSource(ctx("zb", trace=trace, fault_at=0), trace, None, clock=clock)
    got = []
    for it in range(4):
        got.append(src.plan(it, None).link_delays_s)
        clock.now += 0.6
    assert got == [(0.0, 0.0, 0.0)] * 3 + [(0.0, 0.02, 0.0)]  # 0.0, 0.6, 1.2, then 1.8 s
