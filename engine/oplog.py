"""The op log: one JSON Lines file per stage per cell (``stage<s>.jsonl``).

Records (ARCHITECTURE.md contract):
- ``{"kind": "op", "iter", "stage", "op", "mb", "start_ms", "end_ms", "path"}`` for compute ops
  (F, B, W, BW, and STEP for the optimizer) and for p2p events (SEND_F, RECV_F, SEND_B,
  RECV_B) which also carry ``"peer"`` and ``"delay_ms"``;
- ``{"kind": "iteration", "iter", "stage", "schedule", "fault", "costs", "loss", ...}`` once
  per stage per iteration.
Times are milliseconds on the clock shared by all stages of that iteration (0 = the agreed
iteration start). This module writes and reads the format; it imports no torch.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

COMPUTE_OPS = ("F", "B", "W", "BW")
COMM_OPS = ("SEND_F", "RECV_F", "SEND_B", "RECV_B")


class OpLogWriter:
    """Appends records to one stage's log; each line is flushed so a crash loses nothing."""

    def __init__(self, path: Path, stage: int) -> None:
        self.path = Path(path)
        self.stage = stage
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = self.path.open("a", encoding="utf-8")

    def _write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._fh.flush()

    def op(
        self,
        iteration: int,
        op: str,
        mb: int,
        start_ms: float,
        end_ms: float,
        path: str,
        peer: int | None = None,
        delay_ms: float | None = None,
        **extra: Any,
    ) -> None:
        """Logs one executed op (compute or p2p event); ``extra`` adds fields (e.g. a
        RECV's ``sent_ms``, the sender's handover time on the shared clock)."""
        rec: dict[str, Any] = {
            "kind": "op",
            "iter": iteration,
            "stage": self.stage,
            "op": op,
            "mb": mb,
            "start_ms": round(start_ms, 4),
            "end_ms": round(end_ms, 4),
            "path": path,
        }
        if peer is not None:
            rec["peer"] = peer
            rec["delay_ms"] = delay_ms or 0.0
        rec.update(extra)
        self._write(rec)

    def iteration(self, iteration: int, **fields: Any) -> None:
        """Logs the per-iteration header (schedule, fault, costs, loss, ...)."""
        self._write({"kind": "iteration", "iter": iteration, "stage": self.stage, **fields})

    def close(self) -> None:
        self._fh.close()


@dataclass(frozen=True)
class IterationStats:
    """Iteration time of a cell computed the paper's way."""

    per_iteration_ms: dict[int, float]
    mean_ms: float
    std_ms: float
    iterations_used: list[int]


def read_records(cell_dir: Path) -> list[dict[str, Any]]:
    """All records of every ``stage*.jsonl`` in ``cell_dir`` (a torn last line is skipped)."""
    records: list[dict[str, Any]] = []
    for f in sorted(Path(cell_dir).glob("stage*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def complete_iterations(records: list[dict[str, Any]]) -> set[int] | None:
    """The iterations in which every stage of the cell logged its iteration record and as
    many compute ops as its schedule has (a stage cut short, or a log cut off, does not
    count); None when the logs carry no iteration records to check against."""
    stages: set[int] = set()
    expected: dict[tuple[int, int], int | None] = {}
    counts: dict[tuple[int, int], int] = {}
    for r in records:
        if "stage" not in r or "iter" not in r:
            continue
        key = (int(r["iter"]), int(r["stage"]))
        stages.add(key[1])
        if r.get("kind") == "iteration":
            schedule = r.get("schedule") or []
            expected[key] = len(schedule[key[1]]) if len(schedule) > key[1] else None
        elif r.get("kind") == "op" and r.get("op") in COMPUTE_OPS:
            counts[key] = counts.get(key, 0) + 1
    if not expected:
        return None
    return {
        it for it in {k[0] for k in expected}
        if all((it, s) in expected and expected[(it, s)] in (None, counts.get((it, s), 0)) for s in stages)
    }


def iteration_times_ms(records: list[dict[str, Any]]) -> dict[int, float]:
    """Per complete iteration: the max over stages of the last op end on the shared clock."""
    out: dict[int, float] = {}
    for r in records:
        if r.get("kind") != "op":
            continue
        it = int(r["iter"])
        out[it] = max(out.get(it, 0.0), float(r["end_ms"]))
    complete = complete_iterations(records)
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
