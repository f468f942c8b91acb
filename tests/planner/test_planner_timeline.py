"""The terminal timeline (the PNG one, drawn by ``figures.timeline``, is covered through
``pmctl simulate --plot`` in test_planner_cli)."""

from __future__ import annotations

from engine.planner.costs import StageCosts
from engine.planner.generators import generate
from engine.planner.simulate import simulate
from engine.planner.timeline_text import timeline_rows

COSTS = StageCosts.uniform(4, 10, 10, 10)


def test_one_column_per_op_shows_the_zb_timeline_exactly():
    r = simulate(generate("zb", 4, 12, COSTS), COSTS, (0, 0, 0))
    rows = timeline_rows(r.ops, 4, r.iteration_time, width=39)  # one column = 10 = one op
    assert rows[0].startswith("FfFfFfFBfbFBfbFBfbWBwbWBwbWBwbWwWwWw")
    assert rows[3].startswith("...FBfbFBfbFBfbFBfbFBfbFBfbWwWwWwWwWwWw")
    for row in rows:
        assert len(row) == 39
        assert row.count(".") * 10 == r.iteration_time - 360  # idle = T - busy


def test_full_backwards_and_idle_time_show():
    r = simulate(generate("1f1b", 4, 12, COSTS), COSTS, (30, 0, 0))
    rows = timeline_rows(r.ops, 4, r.iteration_time, width=80)
    assert all("X" in row or "x" in row for row in rows)
    assert all("W" not in row.upper() for row in rows)
    assert rows[1].startswith("....")  # stage 1 waits for the slow link

