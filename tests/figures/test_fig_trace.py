"""The Perfetto trace and the per-cell timeline of a cell's op logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fig_synthetic import write_oplogs

from engine.oplog import read_records
from figures.perfetto import build_trace, write_trace
from figures.timeline import NoOpsError, render_cell_timeline
from tests.jobs import run_job

REQUIRED = {
    "X": {"name", "cat", "ph", "ts", "dur", "pid", "tid"},
    "M": {"name", "ph", "pid", "tid", "args"},
}
EPS_US = 1e-3  # the trace's resolution: 1 ns


@pytest.fixture
def cell(tmp_path: Path) -> Path:
    path = tmp_path / "fig15" / "zb" / "2_3" / "0.06"
    write_oplogs(path, [500.0, 520.0, 540.0], stages=4, mbs=3, delay_ms=60.0)
    return path


def _add_delegate_sends(path: Path) -> None:
    """Three overlapping delegate sends from stage 2 (K=3 workers in flight) and their
    receives; the last send returns after its data arrived (a blocking send)."""
    with (path / "stage2.jsonl").open("a") as f2, (path / "stage3.jsonl").open("a") as f3:
        for mb in range(3):
            send = {"kind": "op", "iter": 2, "stage": 2, "op": "SEND_F", "mb": mb + 10,
                    "start_ms": 10 + mb, "end_ms": 80 + mb, "path": "delegate", "peer": 3, "delay_ms": 60}
            arrived = 81 + mb if mb < 2 else 79.5 + mb
            recv = {**send, "stage": 3, "op": "RECV_F", "peer": 2, "start_ms": 5 + mb,
                    "end_ms": arrived, "sent_ms": 10 + mb}
            f2.write(json.dumps(send) + "\n")
            f3.write(json.dumps(recv) + "\n")


def arrows(trace: dict[str, Any]) -> list[tuple[dict, dict]]:
    """(slice the arrow leaves, slice it enters) per flow (v2 ``bind_id`` bindings), after
    checking each id binds exactly one of each."""
    outs: dict[int, list[dict]] = {}
    ins: dict[int, list[dict]] = {}
    for e in trace["traceEvents"]:
        if "bind_id" in e:
            assert e["ph"] == "X" and e.get("flow_out", False) != e.get("flow_in", False), e
            (outs if e.get("flow_out") else ins).setdefault(e["bind_id"], []).append(e)
    assert outs.keys() == ins.keys()
    assert all(len(v) == 1 for v in [*outs.values(), *ins.values()])
    return [(outs[i][0], ins[i][0]) for i in sorted(outs)]


def _inside(ts: float, s: dict) -> bool:
    return s["ts"] - EPS_US <= ts <= s["ts"] + s["dur"] + EPS_US


def check_arrows(trace: dict[str, Any]) -> int:
    """Every arrow goes forward in time, from the end of a send (or a point inside it) to a
    zero-length slice at the end of its receive; returns how many left a departure marker."""
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    by_track: dict[tuple[int, int], list[dict]] = {}
    for e in slices:
        by_track.setdefault((e["pid"], e["tid"]), []).append(e)
    markers = 0
    for out, into in arrows(trace):
        # viewers draw from the end of the slice left to the start of the slice entered
        start, finish = out["ts"] + out["dur"], into["ts"]
        assert finish >= start - EPS_US, (out, into)
        assert into["dur"] == 0 and into["name"].endswith(" arrived")
        recvs = [e for e in by_track[(into["pid"], into["tid"])] if e["name"].startswith("RECV_")
                 and abs(e["ts"] + e["dur"] - into["ts"]) <= EPS_US and e["args"]["mb"] == into["args"]["mb"]]
        assert len(recvs) == 1, into
        assert recvs[0]["name"][len("RECV_"):] == into["name"].split()[0]
        if out["name"].startswith("SEND_"):
            assert out["name"][len("SEND_"):] == into["name"].split()[0]
            continue
        markers += 1
        assert out["dur"] == 0 and out["name"] == into["name"].replace("arrived", "sent")
        assert any(e["name"].startswith("SEND_") and _inside(out["ts"], e)
                   for e in by_track[(out["pid"], out["tid"])]), out
    return markers


def test_trace_events_are_complete_and_flows_pair(cell: Path) -> None:
    _add_delegate_sends(cell)
    out = write_trace(cell)
    trace = json.loads(out.read_text())
    events = trace["traceEvents"]
    for e in events:
        assert REQUIRED[e["ph"]] <= e.keys(), e
    pairs = arrows(trace)
    # 3 iterations x 3 micro-batches x 3 links of forwards, plus the 3 delegate sends.
    assert len(pairs) == 3 * 3 * 3 + 3
    for o, i in pairs:
        assert i["pid"] == o["pid"] + 1  # forward sends go to the next stage
    assert check_arrows(trace) == 1  # the blocking send that returned after the arrival
    processes = {e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert processes == {f"stage {s}" for s in range(4)}
    threads = {(e["pid"], e["args"]["name"]) for e in events if e["name"] == "thread_name"}
    assert {(0, "compute"), (0, "send"), (1, "receive"), (2, "delegate send"), (2, "delegate send 3"),
            (3, "delegate receive")} <= threads


def test_arrows_start_at_the_send_end_and_finish_at_the_arrival(cell: Path) -> None:
    trace = build_trace(read_records(cell))
    for out, into in arrows(trace):
        assert out["name"].startswith("SEND_F")  # every send here ended before its arrival
        assert into["ts"] - (out["ts"] + out["dur"]) == pytest.approx(60_000.0)  # the delay, us
        assert into["args"]["flight_ms"] == pytest.approx(60.0)


def test_slices_on_one_track_never_overlap(cell: Path) -> None:
    _add_delegate_sends(cell)
    events = build_trace(read_records(cell))["traceEvents"]
    tracks: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for e in events:
        if e["ph"] == "X" and e["dur"] > 0:  # zero-length markers nest anywhere
            tracks.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in tracks.values():
        spans.sort()
        assert all(a_end <= b_start + 1e-6 for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


def test_iterations_are_laid_end_to_end(cell: Path) -> None:
    events = build_trace(read_records(cell))["traceEvents"]
    firsts = sorted(e["ts"] for e in events if e["ph"] == "X" and e["name"] == "F0" and e["pid"] == 0)
    assert firsts == [0.0, 500_000.0, 1_020_000.0]  # microseconds: after 500 ms, then 520 ms


def test_timeline_png(cell: Path, tmp_path: Path) -> None:
    png = render_cell_timeline(cell)
    assert png == cell / "timeline.png" and png.stat().st_size > 0
    with pytest.raises(NoOpsError):
        render_cell_timeline(tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_arrows_of_a_real_pipemorph_cell(tmp_path: Path) -> None:
    """A real 4-stage run (tiny preset, PipeMorph, 50 ms on link 2_3 from iteration 1, so
    delegates carry the messages): every arrow of its trace goes forward in time."""
    out = tmp_path / "cell"
    res = run_job(["--preset", "tiny", "--method", "pipemorph", "--iterations", "3", "--microbatches", "6",
                   "--links", "2_3", "--delay", "0.05", "--fault-at", "1", "--pace", "4,5,3",
                   "--out", str(out), "--timeout", "30"], timeout=90)
    assert res.returncode == 0, res.stderr[-3000:]
    trace = json.loads(write_trace(out).read_text())
    pairs = arrows(trace)
    # every message of 3 iterations: 6 micro-batches x 3 links x 2 directions
    assert len(pairs) == 3 * 6 * 3 * 2
    check_arrows(trace)
    assert any(o["cat"] == "delegate send" for o, _ in pairs)  # the offloaded iterations


def test_a_send_after_its_arrival_still_points_forward(tmp_path) -> None:
    # clock skew between hosts: the sender's slice starts after the receiver saw the data
    from engine.oplog import OpLogWriter
    from figures.perfetto import write_trace

    for stage, (op, start, end) in enumerate((("SEND_F", 10.0, 12.0), ("RECV_F", 0.0, 8.0))):
        w = OpLogWriter(tmp_path / f"stage{stage}.jsonl", stage)
        w.op(0, op, 0, start, end, "inline", peer=1 - stage, **({"sent_ms": 10.0} if stage else {}))
        w.close()
    events = json.loads(write_trace(tmp_path).read_text())["traceEvents"]
    out = next(e for e in events if e.get("flow_out"))
    into = next(e for e in events if e.get("flow_in"))
    assert out["bind_id"] == into["bind_id"] and into["ts"] >= out["ts"]
    assert into["args"]["clock_skew_ms"] > 0
