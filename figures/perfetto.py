"""A cell's op logs as a Chrome/Perfetto trace (JSON object format, opens in ui.perfetto.dev).

One process per stage; threads (tracks) for compute, inline sends, inline receives and the
delegate workers' sends and receives. Overlapping events of one kind (K delegates in flight)
get extra lanes ("delegate send 2", ...) since a track's slices must nest. Iterations are laid
end to end: each op log counts from its iteration's start, so iteration k is shifted by the
lengths of iterations before it. Pure data in (op-log records, typed or as JSON objects),
JSON-able dict out.

Each message is one flow arrow, matched by (link, direction, micro-batch, iteration), from the
moment its send ended to the moment it arrived (the receive's end). A receive slice starts when
the receive is posted, long before the data comes, and viewers draw an arrow from the end of
the slice it leaves to the *start* of the slice it enters (Perfetto's rule); so the arrow enters
a zero-length ``F3 arrived`` slice at the arrival, on the receive's track. It leaves the send
slice itself, or, where the send ended after the data arrived (a blocking send returns once
the receiver has it), a zero-length ``F3 sent`` slice inside the send slice 1 ns before the
arrival. Flows are bound explicitly to those slices (flow v2: ``bind_id`` with ``flow_out`` /
``flow_in`` on the ``X`` events), so no viewer has to guess the enclosing slice from a
timestamp.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.oplog import (
    OpRecord,
    RecordLike,
    iteration_times_ms,
    read_typed,
    split_records,
)

TRACE_NAME = "trace.json"
_TRACK_BASE = {"compute": 0, "send": 100, "receive": 200, "delegate send": 300, "delegate receive": 400}
_INLINE_PATHS = ("", "inline", None)
FlowKey = tuple[int, str, int, int]
_NS = 0.001  # one nanosecond in trace microseconds


def _category(rec: OpRecord) -> str:
    """The track kind of a record: compute (F, B, W, BW and STEP) or a p2p event's."""
    if not rec.op.is_comm:
        return "compute"
    kind = "send" if rec.op.is_send else "receive"
    return kind if rec.path in _INLINE_PATHS else f"delegate {kind}"


def _flow_key(rec: OpRecord, peer: int) -> FlowKey:
    """(link, direction, mb, iteration): a send and its receive share it."""
    assert rec.op.direction is not None
    return (min(rec.stage, peer), rec.op.direction.value, rec.mb, rec.iteration)


def _us(ms: float) -> float:
    """Milliseconds as trace microseconds, rounded to the nanosecond (the trace's resolution)."""
    return round(ms * 1000.0, 3)


def iteration_offsets_ms(records: Iterable[RecordLike]) -> dict[int, float]:
    """Start of each iteration on one continuous axis (sum of the earlier iterations' times)."""
    times = iteration_times_ms(records)
    offsets, t = {}, 0.0
    for it in sorted(times):
        offsets[it] = t
        t += times[it]
    return offsets


def build_trace(records: Iterable[RecordLike], name: str = "pmctl cell") -> dict[str, Any]:
    """The trace dict (``traceEvents`` + metadata) of a cell's op and iteration records."""
    ops, heads = split_records(records)
    offsets = iteration_offsets_ms([*ops, *heads])
    ops.sort(key=lambda r: offsets.get(r.iteration, 0.0) + r.start_ms)
    events: list[dict[str, Any]] = []  # one X slice per op, in the order of ``ops``
    lanes: dict[tuple[int, str], list[float]] = {}  # (stage, category) -> each lane's end (us)
    threads: dict[tuple[int, int], str] = {}
    for r in ops:
        stage, cat = r.stage, _category(r)
        base = offsets.get(r.iteration, 0.0)
        ts = _us(base + r.start_ms)
        dur = max(round(_us(base + r.end_ms) - ts, 3), 0.0)
        ends = lanes.setdefault((stage, cat), [])
        lane = next((i for i, e in enumerate(ends) if e <= ts), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = ts + dur
        tid = _TRACK_BASE[cat] + lane
        threads[(stage, tid)] = cat if lane == 0 else f"{cat} {lane + 1}"
        rec = r.to_json()
        args = {k: rec[k] for k in ("iter", "mb", "path", "peer", "delay_ms", "sent_ms") if k in rec}
        events.append(
            {"name": f"{r.op.value}{r.mb}", "cat": cat, "ph": "X", "ts": ts, "dur": dur,
             "pid": stage, "tid": tid, "args": args}
        )
    markers = _flows(ops, events)
    meta: list[dict[str, Any]] = []
    for stage in sorted({s for s, _ in threads}):
        meta.append({"name": "process_name", "ph": "M", "ts": 0, "pid": stage, "tid": 0,
                     "args": {"name": f"stage {stage}"}})
        meta.append({"name": "process_sort_index", "ph": "M", "ts": 0, "pid": stage, "tid": 0,
                     "args": {"sort_index": stage}})
    for (stage, tid), tname in sorted(threads.items()):
        meta.append({"name": "thread_name", "ph": "M", "ts": 0, "pid": stage, "tid": tid,
                     "args": {"name": tname}})
        meta.append({"name": "thread_sort_index", "ph": "M", "ts": 0, "pid": stage, "tid": tid,
                     "args": {"sort_index": tid}})
    return {"traceEvents": meta + events + markers, "displayTimeUnit": "ms",
            "otherData": {"name": name}}


def _marker(name: str, slice_: dict[str, Any], ts: float, args: dict[str, Any]) -> dict[str, Any]:
    """A zero-length slice at ``ts`` on the track of ``slice_``."""
    return {"name": name, "cat": "p2p", "ph": "X", "ts": ts, "dur": 0.0,
            "pid": slice_["pid"], "tid": slice_["tid"], "args": args}


def _flows(ops: list[OpRecord], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Binds one flow per matched send/receive pair (sets ``bind_id`` + ``flow_out`` on the
    send's slice or a departure marker, ``flow_in`` on an arrival marker); returns the markers.
    Unmatched p2p events get none."""
    sends: dict[FlowKey, int] = {}  # flow key -> index in ops (= in events)
    recvs: dict[FlowKey, int] = {}
    for i, r in enumerate(ops):
        if r.op.is_comm and r.peer is not None:
            (sends if r.op.is_send else recvs)[_flow_key(r, r.peer)] = i
    markers: list[dict[str, Any]] = []
    for n, key in enumerate(sorted(k for k in sends if k in recvs), start=1):
        send, recv = events[sends[key]], events[recvs[key]]
        link, direction, mb, it = key
        arrive = round(recv["ts"] + recv["dur"], 3)
        send_end = round(send["ts"] + send["dur"], 3)
        skew_us = 0.0
        if send["ts"] < arrive and send_end <= arrive:
            out, depart = send, send_end
        else:  # the send returned after the data had arrived: leave just before the arrival
            # (1 ns, the trace's resolution: a viewer must meet the start before the end)
            depart = max(send["ts"], round(arrive - _NS, 3))
            # clock skew between hosts can put the send after the arrival: the arrow still
            # goes forward, and the arrival marker says by how much it was moved
            skew_us = max(0.0, depart - arrive)
            arrive = max(arrive, depart)
            out = _marker(f"{direction}{mb} sent", send, depart, {"iter": it, "mb": mb})
            markers.append(out)
        out.update(bind_id=n, flow_out=True)
        args = {"iter": it, "mb": mb, "link": f"{link}_{link + 1}",
                "flight_ms": round((arrive - depart) / 1000.0, 4)}
        if skew_us:
            args["clock_skew_ms"] = round(skew_us / 1000.0, 4)
        markers.append({**_marker(f"{direction}{mb} arrived", recv, arrive, args),
                        "bind_id": n, "flow_in": True})
    return markers


def write_trace(cell_dir: Path, out: Path | None = None) -> Path:
    """Writes the trace of ``cell_dir`` to ``out`` (default ``<cell_dir>/trace.json``)."""
    cell_dir = Path(cell_dir)
    ops, heads = read_typed(cell_dir)
    if not ops:
        raise ValueError(f"{cell_dir}: no op records in stage*.jsonl (is this a cell folder?)")
    out = Path(out) if out is not None else cell_dir / TRACE_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    trace = build_trace([*ops, *heads], "/".join(cell_dir.parts[-3:]))
    out.write_text(json.dumps(trace), encoding="utf-8")
    return out
