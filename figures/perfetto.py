"""A cell's op logs as a Chrome/Perfetto trace (JSON object format, opens in ui.perfetto.dev).

One process per stage; threads (tracks) for compute, inline sends, inline receives and the
delegate workers' sends and receives; a flow arrow from each send to its receive, matched by (link,
direction, micro-batch, iteration). Overlapping events of one kind (K delegates in flight)
get extra lanes ("delegate send 2", ...) since a track's slices must nest. Iterations are laid
end to end: each op log counts from its iteration's start, so iteration k is shifted by the
lengths of iterations before it. Pure data in (op-log records, typed or as JSON objects),
JSON-able dict out.
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


def _category(rec: OpRecord) -> str:
    """The track kind of a record: compute (F, B, W, BW and STEP) or a p2p event's."""
    if not rec.op.is_comm:
        return "compute"
    kind = "send" if rec.op.is_send else "receive"
    return kind if rec.path in _INLINE_PATHS else f"delegate {kind}"


def _flow_key(rec: OpRecord, peer: int) -> tuple[int, str, int, int]:
    """(link, direction, mb, iteration): a send and its receive share it."""
    assert rec.op.direction is not None
    return (min(rec.stage, peer), rec.op.direction.value, rec.mb, rec.iteration)


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
    events: list[dict[str, Any]] = []
    lanes: dict[tuple[int, str], list[float]] = {}  # (stage, category) -> each lane's end (us)
    threads: dict[tuple[int, int], str] = {}
    placed: list[tuple[int, int, float, float]] = []  # per op: pid, tid, ts, dur
    for r in ops:
        stage, cat = r.stage, _category(r)
        ts = (offsets.get(r.iteration, 0.0) + r.start_ms) * 1000.0
        dur = max(r.duration_ms, 0.0) * 1000.0
        ends = lanes.setdefault((stage, cat), [])
        lane = next((i for i, e in enumerate(ends) if e <= ts), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = ts + dur
        tid = _TRACK_BASE[cat] + lane
        threads[(stage, tid)] = cat if lane == 0 else f"{cat} {lane + 1}"
        rec = r.to_json()
        args = {k: rec[k] for k in ("iter", "mb", "path", "peer", "delay_ms") if k in rec}
        events.append(
            {"name": f"{r.op.value}{r.mb}", "cat": cat, "ph": "X", "ts": ts, "dur": dur,
             "pid": stage, "tid": tid, "args": args}
        )
        placed.append((stage, tid, ts, dur))
    events.extend(_flows(ops, placed))
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
    return {"traceEvents": meta + events, "displayTimeUnit": "ms", "otherData": {"name": name}}


def _flows(ops: list[OpRecord], placed: list[tuple[int, int, float, float]]) -> list[dict[str, Any]]:
    """Flow start (on the send) / end (on the receive) pairs; unmatched p2p get none."""
    sends: dict[tuple[int, str, int, int], int] = {}  # flow key -> index in ops
    recvs: dict[tuple[int, str, int, int], int] = {}
    for i, r in enumerate(ops):
        if r.op.is_comm and r.peer is not None:
            (sends if r.op.is_send else recvs)[_flow_key(r, r.peer)] = i
    out = []
    for n, key in enumerate(sorted(k for k in sends if k in recvs)):
        s_pid, s_tid, s_ts, s_dur = placed[sends[key]]
        r_pid, r_tid, r_ts, r_dur = placed[recvs[key]]
        link, direction, mb, it = key
        name = f"{direction}{mb} link {link}-{link + 1}"
        # Bind each end inside its slice (midpoints), so the viewer attaches the arrow.
        out.append({"name": name, "cat": "p2p", "ph": "s", "id": n, "ts": s_ts + s_dur / 2,
                    "pid": s_pid, "tid": s_tid, "args": {"iter": it}})
        out.append({"name": name, "cat": "p2p", "ph": "f", "bp": "e", "id": n,
                    "ts": r_ts + r_dur / 2, "pid": r_pid, "tid": r_tid, "args": {"iter": it}})
    return out


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
