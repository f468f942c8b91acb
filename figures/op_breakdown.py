"""Where an iteration's time goes, from a cell's op logs: compute, bubbles, head-of-line blocking.

Per stage and iteration, on the iteration's shared clock (its span is the iteration time T, the
max over stages of the last op end, as ``engine.oplog`` measures it):
- compute = the stage's F/B/W/BW op time;
- head-of-line blocking = the time its compute thread spent in inline sends that carried an
  injected delay (send start to end: the stall before the send is posted). On CUDA the delay
  is a sleep kernel on the compute stream: the send returns at once and the stall is the gap
  before the next compute op's CUDA event, so there it counts as the injected ``delay_ms``
  (taken out of the bubble; compute, timed by events, never holds it). Delegate sends never
  block the compute thread, so they count nothing;
- bubble = the rest of T (waiting for a receive, idling, the optimizer step).
The critical stage is the one with the most blocked-or-busy time (compute + head-of-line): the
stage the others wait on. Means over the iterations a cell's value uses (the last 5). Pure.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.cellspec import Device
from engine.oplog import LAST_ITERATIONS, RecordLike, iteration_times_ms, split_records, summarize


@dataclass(frozen=True)
class StageSplit:
    """One stage's split of the iteration time (ms; they add up to the iteration time)."""

    stage: int
    compute_ms: float
    hol_ms: float
    bubble_ms: float

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "compute_ms": round(self.compute_ms, 3),
                "hol_ms": round(self.hol_ms, 3), "bubble_ms": round(self.bubble_ms, 3)}


@dataclass(frozen=True)
class Breakdown:
    """A cell's split: per stage, means over ``iterations``; ``critical`` is the stage the
    figure draws."""

    iteration_ms: float
    iterations: tuple[int, ...]
    stages: tuple[StageSplit, ...]

    @property
    def critical(self) -> StageSplit:
        """The stage with the most compute + head-of-line time (the lowest stage on a tie)."""
        return max(self.stages, key=lambda s: (s.compute_ms + s.hol_ms, -s.stage))

    def to_json(self) -> dict[str, Any]:
        crit = self.critical
        return {"iteration_ms": round(self.iteration_ms, 3), "iterations": list(self.iterations),
                "critical_stage": crit.stage, "compute_ms": round(crit.compute_ms, 3),
                "bubble_ms": round(crit.bubble_ms, 3), "hol_ms": round(crit.hol_ms, 3),
                "stages": [s.to_json() for s in self.stages]}


def breakdown(records: Iterable[RecordLike], last: int = LAST_ITERATIONS,
              device: Device = "cpu") -> Breakdown | None:
    """The split of a cell's last ``last`` complete iterations (run on ``device``, the cell
    spec's: it decides how an inline send's stall shows); None without any."""
    ops, heads = split_records(records)
    times = iteration_times_ms([*heads, *ops])
    used = summarize(times, last).iterations_used
    if not used:
        return None
    stages = sorted({r.stage for r in ops})
    compute: dict[tuple[int, int], float] = {}
    hol: dict[tuple[int, int], float] = {}
    for r in ops:
        key = (r.iteration, r.stage)
        if r.op.is_compute:
            compute[key] = compute.get(key, 0.0) + r.duration_ms
        elif r.op.is_send and r.path == "inline" and r.delay_ms > 0:
            # CUDA: the sleep kernel stalls the stream, not the host (see the module docstring)
            stall = r.delay_ms if device == "cuda" else r.duration_ms
            hol[key] = hol.get(key, 0.0) + stall
    splits = []
    for s in stages:
        c = statistics.fmean(compute.get((it, s), 0.0) for it in used)
        h = statistics.fmean(hol.get((it, s), 0.0) for it in used)
        t = statistics.fmean(times[it] for it in used)
        splits.append(StageSplit(s, c, h, max(t - c - h, 0.0)))
    return Breakdown(statistics.fmean(times[it] for it in used), tuple(used), tuple(splits))
