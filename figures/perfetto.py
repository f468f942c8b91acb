"""A cell's op logs as a Chrome/Perfetto trace (JSON object format, opens in ui.perfetto.dev).

One process per stage; threads (tracks) for compute, inline sends, inline receives and the
delegate workers' sends and receives; a flow arrow from each send to its receive, matched by (link,
direction, micro-batch, iteration). Overlapping events of one kind (K delegates in flight)
get extra lanes ("delegate send 2", ...) since a track's slices must nest. Iterations are laid
end to end: each op log counts from its iteration's start, so iteration k is shifted by the
lengths of iterations before it. Pure data in, JSON-able dict out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.oplog import COMM_OPS, COMPUTE_OPS, iteration_times_ms, read_records

TRACE_NAME = "trace.json"
_TRACK_BASE = {"compute": 0, "send": 100, "receive": 200, "delegate send": 300, "delegate receive": 400}
_INLINE_PATHS = ("", "inline", None)


def _category(rec: dict[str, Any]) -> str:
    if rec["op"] in COMPUTE_OPS or rec["op"] not in COMM_OPS:
        return "compute"
    kind = "send" if rec["op"].startswith("SEND") else "receive"
    return kind if rec.get("path") in _INLINE_PATHS else f"delegate {kind}"


def _flow_key(rec: dict[str, Any]) -> tuple[int, str, int, int]:
    """(link, direction, mb, iteration): a send and its receive share it."""
    stage, peer = int(rec["stage"]), int(rec["peer"])
    return (min(stage, peer), rec["op"][-1], int(rec["mb"]), int(rec["iter"]))


def iteration_offsets_ms(records: list[dict[str, Any]]) -> dict[int, float]:
    """Start of each iteration on one continuous axis (sum of the earlier iterations' times)."""
    times = iteration_times_ms(records)
    offsets, t = {}, 0.0
    for it in sorted(times):
        offsets[it] = t
        t += times[it]
    return offsets


def build_trace(records: list[dict[str, Any]], name: str = "pmctl cell") -> dict[str, Any]:
    """The trace dict (``traceEvents`` + metadata) of a cell's op and iteration records."""
    offsets = iteration_offsets_ms(records)
    ops = sorted(
        (r for r in records if r.get("kind") == "op"),
        key=lambda r: (offsets.get(int(r["iter"]), 0.0) + float(r["start_ms"])),
    )
    events: list[dict[str, Any]] = []
    lanes: dict[tuple[int, str], list[float]] = {}  # (stage, category) -> each lane's end (us)
    threads: dict[tuple[int, int], str] = {}
    placed: dict[int, tuple[int, int, float, float]] = {}  # id(rec) -> pid, tid, ts, dur
    for r in ops:
        stage, cat = int(r["stage"]), _category(r)
        ts = (offsets.get(int(r["iter"]), 0.0) + float(r["start_ms"])) * 1000.0
        dur = max(float(r["end_ms"]) - float(r["start_ms"]), 0.0) * 1000.0
        ends = lanes.setdefault((stage, cat), [])
        lane = next((i for i, e in enumerate(ends) if e <= ts), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = ts + dur
        tid = _TRACK_BASE[cat] + lane
        threads[(stage, tid)] = cat if lane == 0 else f"{cat} {lane + 1}"
        args = {k: r[k] for k in ("iter", "mb", "path", "peer", "delay_ms") if k in r}
        events.append(
            {"name": f"{r['op']}{r['mb']}", "cat": cat, "ph": "X", "ts": ts, "dur": dur,
             "pid": stage, "tid": tid, "args": args}
        )
        placed[id(r)] = (stage, tid, ts, dur)
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


def _flows(
    ops: list[dict[str, Any]], placed: dict[int, tuple[int, int, float, float]]
) -> list[dict[str, Any]]:
    """Flow start (on the send) / end (on the receive) pairs; unmatched p2p get none."""
    sends: dict[tuple[int, str, int, int], dict[str, Any]] = {}
    recvs: dict[tuple[int, str, int, int], dict[str, Any]] = {}
    for r in ops:
        if r["op"] in COMM_OPS and "peer" in r:
            (sends if r["op"].startswith("SEND") else recvs)[_flow_key(r)] = r
    out = []
    for n, key in enumerate(sorted(k for k in sends if k in recvs)):
        s_pid, s_tid, s_ts, s_dur = placed[id(sends[key])]
        r_pid, r_tid, r_ts, r_dur = placed[id(recvs[key])]
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
    records = read_records(cell_dir)
    if not any(r.get("kind") == "op" for r in records):
        raise ValueError(f"{cell_dir}: no op records in stage*.jsonl (is this a cell folder?)")
    out = Path(out) if out is not None else cell_dir / TRACE_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(build_trace(records, "/".join(cell_dir.parts[-3:]))), encoding="utf-8")
    return out
