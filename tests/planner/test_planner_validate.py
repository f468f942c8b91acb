"""Rejections: bad schedules, bad delays and costs, each with a message naming where."""

from __future__ import annotations

import pytest

from engine.planner.costs import StageCosts, parse_costs
from engine.planner.errors import PlanningError
from engine.planner.generators import generate
from engine.planner.ir import Schedule
from engine.planner.links import parse_link_delays
from engine.planner.policy import run_policy
from engine.planner.simulate import simulate
from engine.planner.validate import validate

GOOD = "F0 F1 B0 W0 B1 W1\nF0 B0 W0 F1 B1 W1"


def test_good_schedule_passes():
    validate(Schedule.from_text(GOOD))


@pytest.mark.parametrize(
    "text,pattern",
    [
        ("F0 F1 B0 W0 B1\nF0 B0 W0 F1 B1 W1", r"stage 0: W1 is missing"),
        ("F0 F1 B0 W0 B1 W1 F1\nF0 B0 W0 F1 B1 W1", r"stage 0: F1 appears twice"),
        ("F0 F1 B0 W1 B1 W0\nF0 B0 W0 F1 B1 W1", r"stage 0: W1 comes before its B1"),
        ("F0 F1 B0 W0 B1 W1\nF0 B0 W0 F1 BW1", r"stage 0: B0: the schedule mixes split B/W ops and full backwards"),
        ("F0 F1 B0 W0 B1 W1 F2\nF0 B0 W0 F1 B1 W1", r"stage 0: F2 names micro-batch 2"),
        # Stage 0 wants B1 before F1 is sent; stage 1 needs F1 before it can send B1.
        ("F0 B0 W0 B1 F1 W1\nF0 B0 W0 F1 B1 W1", r"deadlocks: stage 0 op B1 .* stage 1 is stuck at F1"),
        # The last stage runs a backward before its own forward.
        ("F0 F1 B0 W0 B1 W1\nB0 F0 W0 F1 B1 W1", r"deadlocks: stage 1 op B0 \(position 0\) waits for F0 of stage 1, but stage 1 runs it only later"),
    ],
)
def test_bad_schedules_are_rejected_naming_stage_and_op(text, pattern):
    sched = Schedule.from_text(text, num_microbatches=2)
    with pytest.raises(PlanningError, match=pattern):
        validate(sched)
    with pytest.raises(PlanningError, match=pattern):
        simulate(sched, StageCosts.uniform(2, 1, 1, 1), (0,))


@pytest.mark.parametrize(
    "specs,pattern",
    [
        (["5_9=10"], r"link 5_9 does not join adjacent"),
        (["4_5=10"], r"link 4_5 does not exist with 4 stages"),
        (["0_2=10"], r"does not join adjacent stages"),
        (["0_1=-3"], r"delay '-3' is negative"),
        (["0_1=abc"], r"not a number"),
        (["0_1=inf"], r"must be finite"),
        (["01=10"], r"link '01' is not of the form A_B"),
        (["0_1:10"], r"expected a_b=MS"),
        (["0_1=1", "0_1=2"], r"given twice"),
    ],
)
def test_bad_link_delays(specs, pattern):
    with pytest.raises(PlanningError, match=pattern):
        parse_link_delays(specs, 4)


def test_link_delays_parse_ints_and_floats():
    assert parse_link_delays(["2_3=20", "0_1=1.5"], 4) == (1.5, 0, 20)
    assert isinstance(parse_link_delays(["0_1=10"], 2)[0], int)


def test_link_delays_read_links_and_units_like_the_command_line():
    # the one link/delay parser (injector.links): 3_2 and 2-3 are 2_3; ms by default, or a unit
    assert parse_link_delays(["3_2=20", "0-1=0.0015s", "1_2 = 60ms"], 4) == (1.5, 60, 20)
    assert parse_link_delays(["0_1=0.1"], 2) == (0.1,)


@pytest.mark.parametrize(
    "tf,pattern",
    [("0", r"tf of stage 0: 0 must be finite and > 0"), ("10,-1,10,10", r"tf of stage 1"),
     ("10,10", r"--tf: got 2 values for 4 stages"), ("x", r"not a number")],
)
def test_bad_costs(tf, pattern):
    with pytest.raises(PlanningError, match=pattern):
        parse_costs(tf, "10", "10", 4)


def test_generate_rejects_bad_shapes():
    costs = StageCosts.uniform(4, 1, 1, 1)
    with pytest.raises(PlanningError, match="micro-batches: 0"):
        generate("zb", 4, 0, costs)
    with pytest.raises(PlanningError, match="unknown schedule 'fast'"):
        generate("fast", 4, 4, costs)
    with pytest.raises(PlanningError, match="got 2 values for 4 stages"):
        generate("zb", 4, 4, costs, (0, 0))


def test_policy_rejects_a_warmup_that_would_deadlock():
    costs = StageCosts.uniform(3, 1, 1, 1)
    with pytest.raises(PlanningError, match="stage 1 holds more forwards than stage 0"):
        run_policy(3, 6, costs, (0, 0), [2, 4, 1])
    with pytest.raises(PlanningError, match="between 1 and N=6"):
        run_policy(3, 6, costs, (0, 0), [7, 3, 1])
