"""The paper's published anchors (Figs 4 and 5) and the generators' basic shapes."""

from __future__ import annotations

import pytest

from engine.planner.adapt import adapted_warmup, plan_warmup
from engine.planner.costs import StageCosts
from engine.planner.generators import generate
from engine.planner.ir import OpKind
from engine.planner.simulate import simulate

COSTS = StageCosts.uniform(4, 10, 10, 10)


@pytest.fixture(scope="module")
def zb():
    return generate("zb", 4, 12, COSTS)


def test_fig4_ideal_zb(zb):
    r = simulate(zb, COSTS, (0, 0, 0))
    assert r.warmup == [7, 5, 3, 1]
    assert r.delta == [2, 2, 2]
    assert r.iteration_time == 390
    assert isinstance(r.iteration_time, int)
    assert r.bubble_rate == pytest.approx(1 - 4 * 360 / (4 * 390))


@pytest.mark.parametrize("delay,expected", [(10, 400), (20, 440)])
def test_fig5_zb_replayed_under_slow_first_link(zb, delay, expected):
    r = simulate(zb, COSTS, (delay, 0, 0))
    assert r.iteration_time == expected
    assert r.schedule == zb  # replay keeps the healthy order


def _internal_gaps(result, stage):
    spans = sorted((t.start, t.end) for t in result.ops if t.stage == stage)
    return sum(b[0] - a[1] for a, b in zip(spans, spans[1:]))


def test_fig5_20ms_cascades_bubbles_upstream(zb):
    healthy = simulate(zb, COSTS, (0, 0, 0))
    slow = simulate(zb, COSTS, (20, 0, 0))
    assert [_internal_gaps(healthy, s) for s in range(4)] == [0, 0, 0, 0]
    # The domino effect: the stages waiting on late gradients stall mid-iteration, the
    # last stage only starts later.
    assert [_internal_gaps(slow, s) for s in range(4)] == [80, 40, 20, 0]


def test_one_f_one_b_shape():
    sched = generate("1f1b", 4, 12, COSTS)
    assert sched.warmup() == [4, 3, 2, 1]  # S-1-s warm-up forwards, then the steady F
    assert not sched.split_backward
    assert [str(op) for op in sched.stages[3][:4]] == ["F0", "BW0", "F1", "BW1"]
    assert [str(op) for op in sched.stages[0][:6]] == ["F0", "F1", "F2", "F3", "BW0", "F4"]
    r = simulate(sched, COSTS, (0, 0, 0))
    assert r.delta == [1, 1, 1]
    assert r.peak_activations == [4, 3, 2, 1]
    # 1F1B's bubbles: (S-1) * (tF + tB + tW) on top of N * (tF + tB + tW).
    assert r.iteration_time == (12 + 3) * 30


def test_adapted_warmup_rule():
    costs = StageCosts((10, 12, 9, 11), (10,) * 4, (10,) * 4)
    # ceil(25/12) = 3 on link 1-2: every stage upstream of it gains 3 in-flight micro-batches.
    assert adapted_warmup(costs, (0, 25, 0), 32) == [10, 8, 3, 1]
    assert adapted_warmup(COSTS, (0, 0, 0), 12) == [7, 5, 3, 1]
    assert adapted_warmup(COSTS, (0.3, 0, 0), 12) == [8, 5, 3, 1]


def test_adapted_warmup_is_capped_with_a_warning():
    plan = plan_warmup(COSTS, (0, 0, 60), 12)
    assert plan.uncapped == [13, 11, 9, 1]
    assert plan.warmup == [12, 11, 9, 1]
    assert plan.capped and "capped" in plan.warning()
    assert plan_warmup(COSTS, (0, 0, 0), 12).warning() is None
    # An absurd delay still terminates at once.
    assert plan_warmup(COSTS, (10**15, 0, 0), 12).warmup == [12, 5, 3, 1]


def test_pipemorph_uses_the_adapted_warmup_and_absorbs_the_delay():
    d = (0, 0, 30)
    sched = generate("pipemorph", 4, 12, COSTS, d)
    assert sched.warmup() == adapted_warmup(COSTS, d, 12)
    adapted = simulate(sched, COSTS, d).iteration_time
    zb_under_delay = simulate(generate("zb", 4, 12, COSTS), COSTS, d).iteration_time
    assert adapted == 390 + 30  # a one-off c, not per micro-batch
    assert zb_under_delay > adapted


def test_ops_follow_the_dependencies(zb):
    r = simulate(zb, COSTS, (20, 0, 0))
    ends = {(t.stage, t.op.kind, t.op.mb): t.end for t in r.ops}
    for t in r.ops:
        if t.op.kind is OpKind.F and t.stage > 0:
            assert t.start >= ends[(t.stage - 1, OpKind.F, t.op.mb)] + (20 if t.stage == 1 else 0)
        if t.op.kind is OpKind.W:
            assert t.start >= ends[(t.stage, OpKind.B, t.op.mb)]
