"""The Perfetto trace and the per-cell timeline of a cell's op logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fig_synthetic import write_oplogs

from engine.oplog import read_records
from figures.perfetto import build_trace, write_trace
from figures.timeline import NoOpsError, render_cell_timeline

REQUIRED = {
    "X": {"name", "cat", "ph", "ts", "dur", "pid", "tid"},
    "M": {"name", "ph", "pid", "tid", "args"},
    "s": {"name", "cat", "ph", "id", "ts", "pid", "tid"},
    "f": {"name", "cat", "ph", "id", "ts", "pid", "tid", "bp"},
}


@pytest.fixture
def cell(tmp_path: Path) -> Path:
    path = tmp_path / "fig15" / "zb" / "2_3" / "0.06"
    write_oplogs(path, [500.0, 520.0, 540.0], stages=4, mbs=3, delay_ms=60.0)
    return path


def _add_delegate_sends(path: Path) -> None:
    """Three overlapping delegate sends from stage 2 (K=3 workers in flight) and their receives."""
    with (path / "stage2.jsonl").open("a") as f2, (path / "stage3.jsonl").open("a") as f3:
        for mb in range(3):
            send = {"kind": "op", "iter": 2, "stage": 2, "op": "SEND_F", "mb": mb + 10,
                    "start_ms": 10 + mb, "end_ms": 80 + mb, "path": "delegate", "peer": 3, "delay_ms": 60}
            recv = {**send, "stage": 3, "op": "RECV_F", "peer": 2, "start_ms": 75 + mb, "end_ms": 81 + mb}
            f2.write(json.dumps(send) + "\n")
            f3.write(json.dumps(recv) + "\n")


def test_trace_events_are_complete_and_flows_pair(cell: Path) -> None:
    _add_delegate_sends(cell)
    out = write_trace(cell)
    trace = json.loads(out.read_text())
    events = trace["traceEvents"]
    for e in events:
        assert REQUIRED[e["ph"]] <= e.keys(), e
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    ends = {e["id"]: e for e in events if e["ph"] == "f"}
    assert starts and starts.keys() == ends.keys()
    # 3 iterations x 3 micro-batches x 3 links of forwards, plus the 3 delegate sends.
    assert len(starts) == 3 * 3 * 3 + 3
    for i, s in starts.items():
        assert ends[i]["pid"] == s["pid"] + 1  # forward sends go to the next stage
    processes = {e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert processes == {f"stage {s}" for s in range(4)}
    threads = {(e["pid"], e["args"]["name"]) for e in events if e["name"] == "thread_name"}
    assert {(0, "compute"), (0, "send"), (1, "receive"), (2, "delegate send"), (2, "delegate send 3"),
            (3, "delegate receive")} <= threads


def test_slices_on_one_track_never_overlap(cell: Path) -> None:
    _add_delegate_sends(cell)
    events = build_trace(read_records(cell))["traceEvents"]
    tracks: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for e in events:
        if e["ph"] == "X":
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
