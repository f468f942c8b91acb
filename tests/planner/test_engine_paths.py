"""The engine path model's properties (engine.planner.engine_paths): pure, no torch."""

from __future__ import annotations

import math

import pytest

from engine.planner.costs import StageCosts
from engine.planner.engine_paths import EngineCosts, EngineIteration, Overheads, simulate_engine
from engine.planner.errors import PlanningError
from engine.planner.generators import generate
from engine.planner.ir import Schedule
from engine.planner.simulate import simulate

S, N = 4, 12
COSTS = StageCosts.uniform(S, 30, 36, 18)


def zb(delays: tuple[float, ...] = (0.0,) * (S - 1)) -> Schedule:
    return generate("zb", S, N, COSTS, (0,) * (S - 1))


def run(schedule: Schedule, delays: tuple[float, ...], path: str = "inline", k: int = 1,
        oh: Overheads | None = None) -> float:
    it = EngineIteration(schedule, delays, path, k)
    return simulate_engine(it, EngineCosts(COSTS, oh or Overheads.none(S))).iteration_ms


@pytest.mark.parametrize("name", ["zb", "1f1b", "pipemorph"])
@pytest.mark.parametrize("path", ["inline", "delegate"])
def test_no_delay_no_overhead_is_the_ideal_simulator(name: str, path: str) -> None:
    sched = generate(name, S, N, COSTS, (0, 0, 40))
    ideal = simulate(sched, COSTS, (0, 0, 0))
    res = simulate_engine(EngineIteration(sched, (0, 0, 0), path, 2),
                          EngineCosts(COSTS, Overheads.none(S)))
    assert res.iteration_ms == ideal.iteration_time
    ops = {(e.stage, e.what): (e.start, e.end) for e in res.events if not e.what.startswith("SEND")}
    assert ops == {(t.stage, str(t.op)): (t.start, t.end) for t in ideal.ops}


def test_message_overhead_is_the_ideal_simulator_with_that_latency() -> None:
    """No delay, a wire latency w per message: the ideal model with w on every link."""
    wire = 0.7
    zero = (0.0,) * S
    oh = Overheads(zero, zero, zero, zero, zero, wire_ms=wire)
    assert run(zb(), (0, 0, 0), oh=oh) == pytest.approx(simulate(zb(), COSTS, (wire,) * 3).iteration_time)


def test_step_and_start_add_to_each_stage() -> None:
    zero = (0.0,) * S
    oh = Overheads(zero, zero, zero, (5.0,) * S, zero)
    assert run(zb(), (0, 0, 0), oh=oh) == simulate(zb(), COSTS, (0, 0, 0)).iteration_time + 5


def test_inline_delay_serialises_consecutive_sends() -> None:
    """k forwards back to back on stage 0 with c on link 0-1: the sender's thread takes at
    least k * (tF + c), since each send sleeps c on it (head-of-line blocking)."""
    c = 50.0
    res = simulate_engine(EngineIteration(zb(), (c, 0, 0)), EngineCosts(COSTS, Overheads.none(S)))
    f_ends = sorted(e.end for e in res.events if e.stage == 0 and e.what.startswith("F"))
    warm = zb().warmup()[0]
    # the (warm)-th forward starts only after warm-1 forwards and their sends
    starts = sorted(e.start for e in res.events if e.stage == 0 and e.what.startswith("F"))
    assert starts[warm - 1] >= (warm - 1) * (30 + c)
    assert f_ends[-1] >= N * 30 + (N - 1) * c
    # the ideal model does not block the sender: much faster
    assert res.iteration_ms > simulate(zb(), COSTS, (c, 0, 0)).iteration_time + 5 * c


def test_delegates_with_enough_workers_keep_throughput() -> None:
    """K >= c / tF + 1 workers: the delay costs about one c per direction, not c per message."""
    c = 60.0
    healthy = run(zb(), (0, 0, 0))
    k = math.ceil(c / 30) + 1
    assert run(zb(), (0, 0, c), "delegate", k) <= healthy + 4 * c
    assert run(zb(), (0, 0, c), "delegate", k) < run(zb(), (0, 0, c), "inline")


def test_one_delegate_serialises_the_link() -> None:
    """K = 1: each message waits for the previous one's delay, so the last forward of stage
    S-2 arrives no earlier than N * c, past the iteration K = 5 workers allow."""
    c = 120.0
    res = simulate_engine(EngineIteration(zb(), (0, 0, c), "delegate", 1),
                          EngineCosts(COSTS, Overheads.none(S)))
    sends = [e for e in res.events if e.stage == 2 and e.what.startswith("SEND_F")]
    assert max(e.end for e in sends) >= N * c
    assert res.iteration_ms >= N * c
    assert res.iteration_ms > run(zb(), (0, 0, c), "delegate", 5)


def test_receives_wait_for_arrival() -> None:
    """An op that consumes a message starts no earlier than the message arrived."""
    c = 40.0
    res = simulate_engine(EngineIteration(zb(), (c, c, c), "delegate", 3),
                          EngineCosts(COSTS, Overheads.none(S)))
    sends = {(e.what[5], int(e.what[6:]), e.stage): e.end for e in res.events if e.what.startswith("SEND")}
    for e in res.events:
        if e.what.startswith("F") and e.stage > 0:
            assert e.start >= sends[("F", int(e.what[1:]), e.stage - 1)]
        if e.what.startswith("B") and e.stage < S - 1:
            assert e.start >= sends[("B", int(e.what[1:]), e.stage + 1)]


def test_down_link_fails_inline_not_delegates() -> None:
    with pytest.raises(PlanningError, match="down"):
        run(zb(), (0, math.inf, 0))
    assert run(zb(), (0, math.inf, 0), "delegate", 2) == run(zb(), (0, 0, 0), "delegate", 2)


def test_bad_inputs_are_planning_errors() -> None:
    with pytest.raises(PlanningError, match="delays"):
        run(zb(), (0, 0))
    with pytest.raises(PlanningError, match="K >= 1"):
        run(zb(), (0, 0, 0), "delegate", 0)
