"""Plans exported as torch.distributed.pipelining's compute-only action CSV, read back by
torch's own parser (``_Action.from_str``) and lowered by its own pass that adds the sends and
receives (``_add_send_recv``), for 1F1B, ZB and a PipeMorph plan adapted to a slow link."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from engine.planner.costs import StageCosts
from engine.planner.export import ExportError, from_torch_csv, to_torch_csv
from engine.planner.generators import generate
from engine.planner.ir import Op, OpKind, Schedule
from tests.conftest import torch_pipelining_runtime

S, N = 4, 12
COSTS = StageCosts.uniform(S, 10, 10, 10)
PLANS = {
    "1f1b": generate("1f1b", S, N, COSTS),
    "zb": generate("zb", S, N, COSTS),
    # 30 ms on link 2-3: stages upstream of it hold 3 more warm-up forwards than ZB
    "pipemorph": generate("pipemorph", S, N, COSTS, (0, 0, 30)),
}
TORCH_KIND = {OpKind.F: "F", OpKind.B: "I", OpKind.W: "W", OpKind.BW: "B"}


def _torch_actions(text: str) -> dict[int, list]:
    """The CSV as torch's ``_load_csv`` reads it: rank = row, one ``_Action`` per cell."""
    action = torch_pipelining_runtime()._Action
    return {rank: [action.from_str(cell) for cell in row]
            for rank, row in enumerate(csv.reader(io.StringIO(text)))}


def test_the_pipemorph_plan_is_the_adapted_one():
    assert PLANS["pipemorph"].warmup() == [10, 8, 6, 1]
    assert PLANS["zb"].warmup() == [7, 5, 3, 1]


@pytest.mark.parametrize("name", list(PLANS))
def test_torch_parses_every_op_back(name):
    schedule = PLANS[name]
    text = to_torch_csv(schedule)
    actions = _torch_actions(text)
    assert sorted(actions) == list(range(S))
    for s, ops in enumerate(schedule.stages):
        assert len(actions[s]) == len(ops)
        for op, action in zip(ops, actions[s]):
            assert action.stage_index == s
            assert action.computation_type.value == TORCH_KIND[op.kind], (op, action)
            assert action.microbatch_index == op.mb
            assert action.sub_actions is None
            assert str(action) == f"{s}{TORCH_KIND[op.kind]}{op.mb}"
    assert from_torch_csv(text) == schedule


@pytest.mark.parametrize("name", list(PLANS))
def test_torch_validates_and_adds_the_communication(name):
    """What ``_PipelineScheduleRuntime._load_csv`` does after parsing: validate (stage s on
    rank s) and lower to compute + send/recv without a deadlock."""
    torch_pipelining_runtime()
    from torch.distributed.pipelining.schedules import (
        _Action,
        _add_send_recv,
        _ComputationType,
        _validate_schedule,
    )

    actions = _torch_actions(to_torch_csv(PLANS[name]))
    assert _validate_schedule(actions, S, S, N) == {s: s for s in range(S)}
    lowered = _add_send_recv({r: list(a) for r, a in actions.items()}, lambda s: s, S)
    for r in range(S):
        compute = [a for a in lowered[r] if a.is_compute_op]
        assert compute == actions[r]
        kinds = [a.computation_type for a in lowered[r]]
        # every forward but the last stage's sends its activation, every input backward but
        # stage 0's its gradient; the receives mirror them
        assert kinds.count(_ComputationType.SEND_F) == (N if r < S - 1 else 0)
        assert kinds.count(_ComputationType.RECV_F) == (N if r > 0 else 0)
        assert kinds.count(_ComputationType.SEND_B) == (N if r > 0 else 0)
        assert kinds.count(_ComputationType.RECV_B) == (N if r < S - 1 else 0)
        if r > 0:  # a forward's input arrives before it runs
            first_f = lowered[r].index(_Action(r, _ComputationType.FORWARD, 0))
            assert lowered[r].index(_Action(r, _ComputationType.RECV_F, 0)) < first_f


def test_csv_shape():
    text = to_torch_csv(PLANS["zb"])
    rows = text.splitlines()
    assert len(rows) == S and text.endswith("\n")
    assert rows[3].split(",")[:4] == ["3F0", "3I0", "3F1", "3I1"]
    assert "B" not in text  # split backwards only
    assert to_torch_csv(PLANS["1f1b"]).splitlines()[3].split(",")[:2] == ["3F0", "3B0"]


def test_last_stage_forwards_out_of_order_are_refused():
    bad = Schedule(((Op(OpKind.F, 0), Op(OpKind.F, 1), Op(OpKind.BW, 0), Op(OpKind.BW, 1)),
                    (Op(OpKind.F, 1), Op(OpKind.F, 0), Op(OpKind.BW, 1), Op(OpKind.BW, 0))), 2)
    with pytest.raises(ExportError, match="micro-batch order"):
        to_torch_csv(bad)


def test_from_torch_csv_rejects_other_layouts():
    with pytest.raises(ExportError, match="one stage per rank"):
        from_torch_csv("0F0,0B0\n0F1\n")
    with pytest.raises(ExportError, match="not a compute action"):
        from_torch_csv("0F0,0SEND_F0\n")
    # torch's empty cells (bubbles) are skipped
    assert from_torch_csv("0F0,,0B0\n").stages == ((Op(OpKind.F, 0), Op(OpKind.BW, 0)),)


def test_pmctl_simulate_exports_the_planned_schedule(tmp_path):
    path = tmp_path / "pm.csv"
    out = subprocess.run(
        [sys.executable, "-m", "pmctl", "simulate", "--schedule", "pipemorph", "--delay", "2_3=30",
         "--json", "--export-csv", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    order = json.loads(out.stdout)["order"]
    assert from_torch_csv(path.read_text()) == Schedule.from_lists(order)
    assert from_torch_csv(path.read_text()) == PLANS["pipemorph"]
    bad = subprocess.run(
        [sys.executable, "-m", "pmctl", "simulate", "--export-csv", str(tmp_path / "no" / "x.csv")],
        capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--export-csv" in bad.stderr
