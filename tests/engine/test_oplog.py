"""The op vocabulary and the typed op-log records: classification, exact JSON round trips,
readers that skip what they cannot use, and the executor writing only vocabulary names."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.opkind import OpKind
from engine.oplog import (
    COMM_OPS,
    COMPUTE_OPS,
    IterationRecord,
    OpLogWriter,
    OpRecord,
    RecordError,
    iteration_times_ms,
    parse_record,
    read_records,
    read_typed,
    split_records,
)
from engine.planner import ir
from engine.planner.ir import Op, Schedule, ScheduleParseError

# Lines as the executor writes them (copied from a 4-stage run's logs, schedules cut to 2 stages).
EXECUTOR_LINES = [
    '{"kind":"op","iter":0,"stage":0,"op":"F","mb":0,"start_ms":11.778,"end_ms":33.8361,"path":"inline"}',
    '{"kind":"op","iter":0,"stage":0,"op":"SEND_F","mb":0,"start_ms":33.8508,"end_ms":40.4731,'
    '"path":"inline","peer":1,"delay_ms":0.0}',
    '{"kind":"op","iter":2,"stage":2,"op":"SEND_F","mb":1,"start_ms":26.0635,"end_ms":45.6438,'
    '"path":"delegate","peer":3,"delay_ms":10.0}',
    '{"kind":"op","iter":0,"stage":1,"op":"RECV_B","mb":0,"start_ms":146.8942,"end_ms":162.7832,'
    '"path":"inline","peer":2,"delay_ms":0.0,"sent_ms":160.1146}',
    '{"kind":"op","iter":0,"stage":1,"op":"STEP","mb":-1,"start_ms":219.1212,"end_ms":233.5399,"path":"inline"}',
    '{"kind":"iteration","iter":0,"stage":1,"schedule":[["F0","F1","B0","W0","B1","W1"],'
    '["F0","B0","F1","B1","W0","W1"]],"fault":{"injected":{"links":"","delays_s":[],"nic_crash":false,'
    '"since_iteration":0,"epoch":0,"at_s":null},"offload":false,"generator":"zb","planned_for_ms":null},'
    '"costs":null,"offload":false,"link_delays_ms":[0.0],"loss":null,"profiled":{"tf":[24.4,19.5],'
    '"tb":[2.6,4.1],"tw":[0.34,0.45]},"iteration_ms":235.6202,"pace_ms":null,"max_rss_mb":233.0,'
    '"clock_offsets_ms":[0.0,0.0]}',
    '{"kind":"iteration","iter":2,"stage":1,"schedule":[["F0","F1","B0","W0","B1","W1"],'
    '["F0","B0","F1","B1","W0","W1"]],"fault":{},"costs":{"tf":[1.0,1.0],"tb":[1.0,1.0],"tw":[1.0,1.0]},'
    '"offload":true,"link_delays_ms":[10.0],"loss":5.516424179077148,"profiled":null,'
    '"iteration_ms":127.1131,"pace_ms":[30.0,30.0,20.0],"max_rss_mb":235.1}',
]


def _dumps(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


def test_one_vocabulary_classifies_every_kind():
    assert {k.value for k in OpKind} == {"F", "B", "W", "BW", "STEP", "SEND_F", "RECV_F", "SEND_B", "RECV_B",
                                         "DRAIN"}  # DRAIN: a profiler range, no op-log record
    assert ir.OpKind is OpKind  # the schedule IR's kinds are the same enum
    assert OpKind.compute_kinds() == (OpKind.F, OpKind.B, OpKind.W, OpKind.BW)
    assert COMPUTE_OPS == ("F", "B", "W", "BW")
    assert COMM_OPS == ("SEND_F", "RECV_F", "SEND_B", "RECV_B")
    assert [k for k in OpKind if k.is_compute] == list(OpKind.compute_kinds())
    for kind in (OpKind.STEP, OpKind.DRAIN):
        assert not kind.is_compute and not kind.is_comm and kind.direction is None
    assert [k for k in OpKind if k.is_backward] == [OpKind.B, OpKind.BW]
    assert [k for k in OpKind if k.is_send] == [OpKind.SEND_F, OpKind.SEND_B]
    assert [k for k in OpKind if k.is_recv] == [OpKind.RECV_F, OpKind.RECV_B]
    assert all(k.is_comm == (k.is_send or k.is_recv) for k in OpKind)
    # direction: whose data the event carries
    table = {OpKind.SEND_F: OpKind.F, OpKind.RECV_F: OpKind.F, OpKind.SEND_B: OpKind.B, OpKind.RECV_B: OpKind.B}
    for kind, direction in table.items():
        assert kind.direction is direction
    assert OpKind.F.direction is None and OpKind.W.direction is None
    assert OpKind.send("F") is OpKind.SEND_F and OpKind.recv(OpKind.B) is OpKind.RECV_B
    with pytest.raises(ValueError, match="expected F or B"):
        OpKind.send("W")


@pytest.mark.parametrize("text", ["SEND_F3", "RECV_B0", "STEP0", "STEP", "F", "X3", "F-1"])
def test_schedules_hold_compute_ops_only(text):
    with pytest.raises(ScheduleParseError):
        Op.parse(text)
    with pytest.raises(ScheduleParseError):
        Schedule.from_text(f"F0 {text}")


def test_schedule_ops_of_other_kinds_are_refused():
    for kind in OpKind:
        if kind.is_compute:
            assert Op.parse(str(Op(kind, 4))) == Op(kind, 4)
        else:
            with pytest.raises(ScheduleParseError, match="not a schedule op"):
                Op(kind, 0)


@pytest.mark.parametrize("line", EXECUTOR_LINES)
def test_executor_lines_round_trip_byte_exact(line):
    rec = parse_record(json.loads(line))
    assert rec is not None
    assert _dumps(rec.to_json()) == line
    assert type(rec).from_json(rec.to_json()) == rec


def test_typed_fields():
    recv = OpRecord.from_json(json.loads(EXECUTOR_LINES[3]))
    assert recv == OpRecord(0, 1, OpKind.RECV_B, 0, 146.8942, 162.7832, "inline", 2, 0.0, 160.1146)
    assert recv.op.direction is OpKind.B and recv.peer == recv.stage + 1  # gradients come from s+1
    head = IterationRecord.from_json(json.loads(EXECUTOR_LINES[5]))
    assert head.scheduled_ops == 6 and head.clock_offsets_ms == [0.0, 0.0] and not head.offload
    assert Schedule.from_lists(head.schedule).num_microbatches == 2
    late = IterationRecord.from_json(json.loads(EXECUTOR_LINES[6]))
    assert late.offload and late.clock_offsets_ms is None and late.pace_ms == [30.0, 30.0, 20.0]
    # A simulator record: no path, no peer; older headers lack fields: defaults.
    sim = OpRecord(0, 1, OpKind.BW, 2, 3, 5)
    assert sim.to_json() == {"kind": "op", "iter": 0, "stage": 1, "op": "BW", "mb": 2,
                             "start_ms": 3, "end_ms": 5}
    assert OpRecord.from_json(sim.to_json()) == sim and sim.duration_ms == 2
    old = IterationRecord.from_json({"kind": "iteration", "iter": 3, "stage": 0})
    assert old == IterationRecord(3, 0) and old.scheduled_ops is None


@pytest.mark.parametrize("obj", [
    [1], "op", None, {"kind": "op"}, {"kind": []}, {"kind": "other", "iter": 0, "stage": 0},
    {"kind": "op", "iter": 0, "stage": 0, "op": "F", "mb": 0, "start_ms": 1.0},  # no end
    {"kind": "op", "iter": 0, "stage": 0, "op": "SEND_X", "mb": 0, "start_ms": 1.0, "end_ms": 2.0},
    {"kind": "op", "iter": "0", "stage": 0, "op": "F", "mb": 0, "start_ms": 1.0, "end_ms": 2.0},
    {"kind": "op", "iter": 0, "stage": 0, "op": "F", "mb": 0.5, "start_ms": 1.0, "end_ms": 2.0},
    {"kind": "op", "iter": 0, "stage": 0, "op": ["F"], "mb": 0, "start_ms": 1.0, "end_ms": 2.0},
    {"kind": "iteration", "stage": 0},
    {"kind": "iteration", "iter": 0, "stage": 0, "schedule": "F0 B0"},
])
def test_malformed_objects_are_not_records(obj):
    assert parse_record(obj) is None
    if isinstance(obj, dict) and obj.get("kind") == "op":
        with pytest.raises(RecordError):
            OpRecord.from_json(obj)


def test_writer_file_round_trip(tmp_path: Path):
    w = OpLogWriter(tmp_path / "stage1.jsonl", 1)
    head = IterationRecord(0, 1, schedule=[["F0", "B0", "W0"], ["F0", "B0", "W0"]], fault={"a": 1},
                           costs={"tf": [1.0], "tb": [2.0], "tw": [3.0]}, loss=2.5, iteration_ms=9.0,
                           clock_offsets_ms=[0.0, 0.1])
    ops = [OpRecord(0, 1, OpKind.F, 0, 0.5, 1.25, "inline"),
           OpRecord(0, 1, OpKind.SEND_B, 0, 2.0, 3.0, "delegate", peer=0, delay_ms=10.0),
           OpRecord(0, 1, OpKind.RECV_F, 0, 0.0, 0.5, "inline", peer=0, sent_ms=0.25)]
    w.write(head)
    for r in ops:
        w.write(r)
    w.op(0, "STEP", -1, 4.123456, 5.0, "inline")  # the convenience form rounds to 0.1 us
    w.iteration(1, schedule=[], fault={})
    w.close()
    typed_ops, heads = read_typed(tmp_path)
    assert typed_ops == [*ops, OpRecord(0, 1, OpKind.STEP, -1, 4.1235, 5.0, "inline")]
    assert heads == [head, IterationRecord(1, 1)]
    assert read_records(tmp_path) == [r.to_json() for r in (head, *ops, typed_ops[-1], heads[1])]
    # the dict records and the typed ones say the same
    assert split_records(read_records(tmp_path)) == (typed_ops, heads)


def test_readers_skip_unusable_lines(tmp_path: Path):
    w = OpLogWriter(tmp_path / "stage0.jsonl", 0)
    w.iteration(0, schedule=[["F0"]], fault={})
    w.op(0, OpKind.F, 0, 1.0, 7.5, "inline")
    w.close()
    with (tmp_path / "stage0.jsonl").open("ab") as fh:
        fh.write(b"[1]\n")  # valid JSON, not an object
        fh.write(b'{"kind":"op","iter":0,"stage":0,"op":"F","mb":0,"path":"\xff\xfe"}\n')  # not UTF-8
        fh.write(b'{"kind":"op","iter":0,"stage":0,"op":"W","mb":0}\n')  # missing fields
        fh.write(b'"just a string"\n\n   \n')
        fh.write(b'{"kind": "op", "iter": 9')  # torn last line
    recs = read_records(tmp_path)
    assert [r["kind"] for r in recs] == ["iteration", "op"]
    ops, heads = read_typed(tmp_path)
    assert len(ops) == 1 and len(heads) == 1
    assert iteration_times_ms(recs) == iteration_times_ms(ops + heads) == {0: 7.5}


def test_figure_readers_survive_a_bad_folder(tmp_path: Path):
    from figures.perfetto import write_trace
    from figures.timeline import render_cell_timeline

    for s in range(2):
        w = OpLogWriter(tmp_path / f"stage{s}.jsonl", s)
        w.op(0, "F", 0, 10.0 * s, 10.0 * s + 5, "inline")
        if s == 0:
            w.op(0, "SEND_F", 0, 5.0, 6.0, "inline", peer=1, delay_ms=2.0)
        else:
            w.op(0, "RECV_F", 0, 0.0, 8.0, "inline", peer=0, sent_ms=5.0)
        w.close()
        with (tmp_path / f"stage{s}.jsonl").open("ab") as fh:
            fh.write(b"[1]\n\xc3\x28\n{}\n")
    trace = json.loads(write_trace(tmp_path).read_text())
    assert sum(bool(e.get("flow_out")) for e in trace["traceEvents"]) == 1  # the send -> receive arrow
    assert render_cell_timeline(tmp_path).is_file()


# -- the executor writes only vocabulary names ----------------------------------------------


class _Runner:
    def __init__(self, torch, rank: int, world: int) -> None:
        self.t, self.first, self.last = torch, rank == 0, rank == world - 1
        self.module = torch.nn.Linear(1, 1)

    def forward(self, mb, inp, tgt):
        return None if self.last else self.t.zeros(1)

    def backward_input(self, mb, grad):
        return None if self.first else self.t.zeros(1)

    backward_full = backward_input

    def backward_weight(self, mb):
        pass

    def check_drained(self):
        pass

    def take_loss(self):
        return 1.0 if self.last else None


class _P2P:
    """Inline and delegate p2p without peers: sends complete, receives arrive at once."""

    def __init__(self, torch, peer: int) -> None:
        self.t, self.peer, self.sent = torch, peer, []

    def prepost(self, *args):
        pass

    def send(self, *args):
        from engine.p2p.inline import SendEvent

        *_, dst, mb, delay_s = args  # inline: (tensor, dst, mb, delay); delegates: (dir, ...)
        self.sent.append(SendEvent(dst, mb, 1.0, 2.0, delay_s))
        return self.sent[-1]

    def recv(self, src_or_direction, mb):
        from engine.p2p.inline import RecvEvent

        return SimpleNamespace(tensor=self.t.zeros(1)), RecvEvent(self.peer, mb, 0.5, 1.5, 1.0)

    def drain(self):
        sent, self.sent = self.sent, []
        return sent


def test_executor_writes_only_vocabulary_names(tmp_path: Path):
    torch = pytest.importorskip("torch")
    from engine.executor import Executor, ExecutorConfig
    from engine.plan_source import IterationPlan
    from engine.profiler import Profiler

    class LocalProfiler(Profiler):
        def agree(self, local, world):
            return [tuple(local)] * world

    class Clock:
        t0 = time.perf_counter()

        def sync(self):
            pass

        def now_ms(self):
            return (time.perf_counter() - self.t0) * 1000.0

    zb = Schedule.from_text("F0 F1 B0 W0 B1 W1\nF0 B0 W0 F1 B1 W1")
    one_f_one_b = Schedule.from_text("F0 F1 BW0 BW1\nF0 BW0 F1 BW1")
    plans = [IterationPlan(0, zb, False, (0.0,)), IterationPlan(1, one_f_one_b, True, (0.004,))]
    for rank in range(2):
        p2p = _P2P(torch, 1 - rank)
        opt = SimpleNamespace(step=lambda: None, zero_grad=lambda set_to_none: None)
        source = SimpleNamespace(plan=lambda it, profiled: plans[it], observe=lambda obs: None)
        data = SimpleNamespace(batch=lambda it, mb: (torch.zeros(1), torch.zeros(1)))
        writer = OpLogWriter(tmp_path / f"stage{rank}.jsonl", rank)
        ex = Executor(ExecutorConfig(rank, 2, 2, torch.device("cpu"), clock_offsets_ms=[0.0, 0.0]),
                      _Runner(torch, rank, 2), data, opt, writer, source, p2p, p2p, Clock(),
                      profiler=LocalProfiler())
        ex.run(2)
        writer.close()
    lines = [ln for f in sorted(tmp_path.glob("stage*.jsonl")) for ln in f.read_text().splitlines()]
    names = {json.loads(ln)["op"] for ln in lines if json.loads(ln)["kind"] == "op"}
    assert names == {k.value for k in OpKind} - {"DRAIN"}  # every logged kind, and nothing else
    for ln in lines:  # every line is a typed record that writes back byte for byte
        rec = parse_record(json.loads(ln))
        assert rec is not None and _dumps(rec.to_json()) == ln
    ops, heads = read_typed(tmp_path)
    assert {(h.iteration, h.clock_offsets_ms is not None) for h in heads} == {(0, True), (1, False)}
    assert {r.path for r in ops if r.iteration == 1 and r.op.is_comm} == {"delegate"}
    for r in ops:
        assert r.op.is_comm == (r.peer is not None)
        if r.op.is_comm:
            # activations go to s+1 and gradients come from it; the others are with s-1
            downstream = r.op in (OpKind.SEND_F, OpKind.RECV_B)
            assert r.peer == r.stage + (1 if downstream else -1) and (r.sent_ms is not None) == r.op.is_recv
    assert set(iteration_times_ms(ops + heads)) == {0, 1}
