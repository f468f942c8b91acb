"""The op log: one JSON Lines file per stage per cell (``stage<s>.jsonl``).

Records (ARCHITECTURE.md contract), typed as ``OpRecord`` and ``IterationRecord`` whose
``to_json`` is exactly the line's object:
- ``{"kind": "op", "iter", "stage", "op", "mb", "start_ms", "end_ms", "path"}`` for compute ops
  (F, B, W, BW, and STEP for the optimizer) and for p2p events (SEND_F, RECV_F, SEND_B,
  RECV_B) which also carry ``"peer"`` and ``"delay_ms"`` (a receive also ``"sent_ms"``);
- ``{"kind": "iteration", "iter", "stage", "schedule", "fault", "generator", "costs", "loss",
  ...}`` once per stage per iteration; ``generator`` names the planner generator of the
  schedule (``zb``, ``1f1b``, ``pipemorph``, ``pipemorph+``; older logs kept it in ``fault``).
Op names are ``engine.opkind.OpKind``. Times are milliseconds on the clock shared by all stages
of that iteration (0 = the agreed iteration start). This module writes and reads the format;
a reader skips what it cannot use (a torn last line, a line that is not UTF-8 or not a JSON
object, a record of another kind or missing a field). It imports no torch.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from engine.opkind import OpKind

# The op names by class, for callers that test strings (the enum is the source).
COMPUTE_OPS = tuple(k.value for k in OpKind if k.is_compute)
COMM_OPS = tuple(k.value for k in OpKind if k.is_comm)
_BY_NAME = {k.value: k for k in OpKind}


class RecordError(ValueError):
    """A JSON object that is not a well-formed op-log record."""


def _int(obj: Mapping[str, Any], key: str) -> int:
    v = obj.get(key)
    if type(v) is int:
        return v
    if type(v) is float and v.is_integer():
        return int(v)
    raise RecordError(f"{key}: expected an integer, got {v!r}")


def _float(obj: Mapping[str, Any], key: str) -> float:
    v = obj.get(key)
    if type(v) is float or type(v) is int:
        return float(v)
    raise RecordError(f"{key}: expected a number, got {v!r}")


def _optional(obj: Mapping[str, Any], key: str, read: Any) -> Any:
    return None if obj.get(key) is None else read(obj, key)


@dataclass(frozen=True)
class OpRecord:
    """One executed op or p2p event of one stage; times in ms on the iteration's shared clock."""

    iteration: int
    stage: int
    op: OpKind
    mb: int  # -1 for STEP
    start_ms: float  # a receive: when it was posted
    end_ms: float  # a receive: when the data arrived
    path: str | None = None  # "inline" or "delegate"; None in the simulator's records
    peer: int | None = None  # p2p events: the stage at the other end
    delay_ms: float = 0.0  # p2p events: the injected link delay
    sent_ms: float | None = None  # receives: the sender's handover time

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms

    def to_json(self) -> dict[str, Any]:
        """The op log's object (key order as written since the first logs)."""
        rec: dict[str, Any] = {
            "kind": "op", "iter": self.iteration, "stage": self.stage, "op": self.op.value,
            "mb": self.mb, "start_ms": self.start_ms, "end_ms": self.end_ms,
        }
        if self.path is not None:
            rec["path"] = self.path
        if self.peer is not None:
            rec["peer"] = self.peer
            rec["delay_ms"] = self.delay_ms
        if self.sent_ms is not None:
            rec["sent_ms"] = self.sent_ms
        return rec

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> OpRecord:
        """Inverse of ``to_json``; ``RecordError`` for another kind or a missing/bad field."""
        if not isinstance(obj, Mapping) or obj.get("kind") != "op":
            raise RecordError("not an op record")
        op, path = obj.get("op"), obj.get("path")
        kind = _BY_NAME.get(op) if type(op) is str else None
        if kind is None:
            raise RecordError(f"op: unknown op {op!r}")
        if path is not None and type(path) is not str:
            raise RecordError(f"path: expected a string, got {path!r}")
        return cls(
            _int(obj, "iter"), _int(obj, "stage"), kind, _int(obj, "mb"),
            _float(obj, "start_ms"), _float(obj, "end_ms"), path, _optional(obj, "peer", _int),
            _optional(obj, "delay_ms", _float) or 0.0, _optional(obj, "sent_ms", _float),
        )


@dataclass(frozen=True)
class IterationRecord:
    """One stage's header of one iteration: the plan in force and what the stage measured."""

    iteration: int
    stage: int
    schedule: list[list[str]] = field(default_factory=list)  # per stage, ``Schedule.to_lists``
    fault: dict[str, Any] | None = field(default_factory=dict)  # the plan source's fault view
    generator: str | None = None  # the planner generator of ``schedule``; None: unknown
    costs: dict[str, list[float]] | None = None  # the F/B/W costs the planner used
    offload: bool = False  # p2p through the delegate workers
    link_delays_ms: list[float | None] = field(default_factory=list)  # None: a crashed link
    loss: float | None = None  # the last stage's mean loss
    profiled: dict[str, list[float]] | None = None  # the agreed profiled costs after it
    iteration_ms: float | None = None  # the agreed iteration time
    pace_ms: list[float] | None = None  # F/B/W pacing targets (CPU presets)
    max_rss_mb: float | None = None
    clock_offsets_ms: list[float] | None = None  # written at iteration 0 only

    @property
    def schedule_generator(self) -> str | None:
        """The generator of this iteration's schedule: the record's, or where older logs kept
        it (their ``fault`` view; before PipeMorph had the paper's rule, ``pipemorph`` cells
        logged ``pipemorph+`` there); None when the log does not say."""
        if self.generator is not None:
            return self.generator
        old = self.fault.get("generator") if isinstance(self.fault, Mapping) else None
        return old if isinstance(old, str) else None

    @property
    def scheduled_ops(self) -> int | None:
        """How many compute ops this stage's schedule holds; None without its schedule."""
        return len(self.schedule[self.stage]) if 0 <= self.stage < len(self.schedule) else None

    def to_json(self) -> dict[str, Any]:
        """The op log's object (key order as the executor writes it)."""
        rec: dict[str, Any] = {"kind": "iteration", "iter": self.iteration, "stage": self.stage}
        for name in _HEADER_FIELDS:
            if name != "generator" or self.generator is not None:  # older logs have none
                rec[name] = getattr(self, name)
        if self.clock_offsets_ms is not None:
            rec["clock_offsets_ms"] = self.clock_offsets_ms
        return rec

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> IterationRecord:
        """Inverse of ``to_json`` (older logs lack some fields: defaults); ``RecordError`` for
        another kind, no iteration/stage, or a schedule that is not lists of op strings."""
        if not isinstance(obj, Mapping) or obj.get("kind") != "iteration":
            raise RecordError("not an iteration record")
        schedule = obj.get("schedule") or []
        if not isinstance(schedule, list) or not all(
            isinstance(ops, list) and all(isinstance(o, str) for o in ops) for ops in schedule
        ):
            raise RecordError("schedule: expected per-stage lists of op strings")
        given = {k: obj[k] for k in (*_HEADER_FIELDS, "clock_offsets_ms") if k in obj}
        given["schedule"] = schedule
        if given.get("generator") is not None and type(given["generator"]) is not str:
            raise RecordError(f"generator: expected a string, got {given['generator']!r}")
        given["offload"] = bool(given.get("offload", False))
        return cls(_int(obj, "iter"), _int(obj, "stage"), **given)


_HEADER_FIELDS = ("schedule", "fault", "generator", "costs", "offload", "link_delays_ms", "loss",
                  "profiled", "iteration_ms", "pace_ms", "max_rss_mb")
_TYPES: dict[str, type[OpRecord | IterationRecord]] = {"op": OpRecord, "iteration": IterationRecord}
Record = OpRecord | IterationRecord
RecordLike = OpRecord | IterationRecord | Mapping[str, Any]


def parse_record(obj: Any) -> Record | None:
    """The typed record of one decoded JSON value; None when it is not a well-formed record."""
    kind = obj.get("kind") if isinstance(obj, Mapping) else None
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    try:
        return cls.from_json(obj) if cls is not None else None
    except RecordError:
        return None


def split_records(records: Iterable[RecordLike]) -> tuple[list[OpRecord], list[IterationRecord]]:
    """Typed ops and iteration headers of ``records`` (typed, or dicts as ``read_records``
    returns them; malformed dicts are left out), each in the given order."""
    ops: list[OpRecord] = []
    heads: list[IterationRecord] = []
    for r in records:
        rec = r if isinstance(r, (OpRecord, IterationRecord)) else parse_record(r)
        if isinstance(rec, OpRecord):
            ops.append(rec)
        elif isinstance(rec, IterationRecord):
            heads.append(rec)
    return ops, heads


class OpLogWriter:
    """Appends records to one stage's log; each line is flushed so a crash loses nothing."""

    def __init__(self, path: Path, stage: int) -> None:
        self.path = Path(path)
        self.stage = stage
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = self.path.open("a", encoding="utf-8")

    def write(self, record: Record) -> None:
        """Appends one record as one line."""
        self._fh.write(json.dumps(record.to_json(), separators=(",", ":")) + "\n")
        self._fh.flush()

    def op(self, iteration: int, op: OpKind | str, mb: int, start_ms: float, end_ms: float, path: str,
           peer: int | None = None, delay_ms: float | None = None, sent_ms: float | None = None) -> None:
        """Logs one executed op (compute or p2p event; ``op`` must be an ``OpKind`` name),
        times to 0.1 us; a RECV's ``sent_ms`` is the sender's handover time."""
        self.write(OpRecord(
            iteration, self.stage, OpKind(op), mb, round(start_ms, 4), round(end_ms, 4), path,
            peer, delay_ms or 0.0, None if sent_ms is None else round(sent_ms, 4),
        ))

    def iteration(self, iteration: int, **fields: Any) -> None:
        """Logs the per-iteration header (``IterationRecord``'s fields: schedule, fault, ...)."""
        self.write(IterationRecord(iteration, self.stage, **fields))

    def close(self) -> None:
        self._fh.close()


def _objects(cell_dir: Path) -> Iterator[Any]:
    """The decoded JSON value of each line of every ``stage*.jsonl`` in ``cell_dir``; a line
    that is not UTF-8 or not JSON (a torn last line) is skipped."""
    for f in sorted(Path(cell_dir).glob("stage*.jsonl")):
        for raw in f.read_bytes().splitlines():
            try:
                yield json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                continue


def read_records(cell_dir: Path) -> list[dict[str, Any]]:
    """The well-formed records of every ``stage*.jsonl`` in ``cell_dir``, as JSON objects."""
    return [obj for obj in _objects(cell_dir) if parse_record(obj) is not None]


def read_typed(cell_dir: Path) -> tuple[list[OpRecord], list[IterationRecord]]:
    """The op and iteration records of every ``stage*.jsonl`` in ``cell_dir``, typed."""
    return split_records(r for r in map(parse_record, _objects(cell_dir)) if r is not None)


@dataclass(frozen=True)
class IterationStats:
    """Iteration time of a cell computed the paper's way."""

    per_iteration_ms: dict[int, float]
    mean_ms: float
    std_ms: float
    iterations_used: list[int]


def complete_iterations(records: Iterable[RecordLike]) -> set[int] | None:
    """The iterations in which every stage of the cell logged its iteration record and as
    many compute ops as its schedule has (a stage cut short, or a log cut off, does not
    count); None when the logs carry no iteration records to check against."""
    ops, heads = split_records(records)
    if not heads:
        return None
    stages = {r.stage for r in ops} | {h.stage for h in heads}
    expected = {(h.iteration, h.stage): h.scheduled_ops for h in heads}
    counts: dict[tuple[int, int], int] = {}
    for r in ops:
        if r.op.is_compute:
            counts[(r.iteration, r.stage)] = counts.get((r.iteration, r.stage), 0) + 1
    return {
        it for it in {h.iteration for h in heads}
        if all((it, s) in expected and expected[(it, s)] in (None, counts.get((it, s), 0)) for s in stages)
    }


def iteration_times_ms(records: Iterable[RecordLike]) -> dict[int, float]:
    """Per complete iteration: the max over stages of the last op end on the shared clock."""
    ops, heads = split_records(records)
    out: dict[int, float] = {}
    for r in ops:
        out[r.iteration] = max(out.get(r.iteration, 0.0), r.end_ms)
    complete = complete_iterations([*ops, *heads])
    if complete is None:
        return out
    return {it: t for it, t in out.items() if it in complete}


# Iterations averaged per cell: the artifact reports the mean of the last 5 (warm, post-fault).
LAST_ITERATIONS = 5


def summarize(per_iteration_ms: dict[int, float], last: int = LAST_ITERATIONS) -> IterationStats:
    """Mean and (sample) standard deviation of the last ``last`` iterations."""
    its = sorted(per_iteration_ms)[-last:]
    vals = [per_iteration_ms[i] for i in its]
    if not vals:
        return IterationStats(per_iteration_ms, math.nan, math.nan, [])
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return IterationStats(per_iteration_ms, statistics.fmean(vals), std, its)


def facts_path(out_dir: Path, stage: int) -> Path:
    """Where a stage writes its runtime facts (versions, host) beside its op log."""
    return Path(out_dir) / f"stage{stage}.facts.json"
