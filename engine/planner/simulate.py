"""Simulate a schedule: replay it under per-link delays and report PipeMorph's metrics.

``simulate`` is the planner's one timing function: iteration time, bubble rate, warm-up per
stage, Delta per link, peak activations per stage (two measures, below) and the timed ops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from engine.planner.activations import inflight_peaks
from engine.planner.costs import StageCosts
from engine.planner.ir import Op, Schedule
from engine.planner.links import check_delays
from engine.planner.replay import BW, F, Lowered, W, lower, replay
from engine.planner.validate import check_structure


class TimedOp(NamedTuple):
    """One executed op: its stage, the op, and when it ran (cost units from 0)."""

    stage: int
    op: Op
    start: float
    end: float


@dataclass(frozen=True)
class SimResult:
    """The outcome of replaying one schedule under one set of link delays."""

    iteration_time: float
    bubble_rate: float  # 1 - busy / (S * T), in 0..1
    warmup: list[int]  # forwards before the first backward, per stage
    delta: list[int]  # warmup[s] - warmup[s+1], per link
    peak_activations: list[int]  # max micro-batches with F run but W/BW not, per stage
    peak_inflight: list[float]  # max in flight as the cap counts it (``activations``)
    ops: list[TimedOp]  # by stage, then in the stage's order
    schedule: Schedule

    def to_json(self) -> dict[str, Any]:
        """The ``pmctl simulate --json`` shape."""
        return {
            "iteration_time": self.iteration_time,
            "bubble_rate": self.bubble_rate,
            "warmup": self.warmup,
            "delta": self.delta,
            "peak_activations": self.peak_activations,
            "peak_inflight": self.peak_inflight,
            "order": self.schedule.to_lists(),
            "ops": [
                {
                    "stage": t.stage,
                    "op": t.op.kind.value,
                    "mb": t.op.mb,
                    "start": t.start,
                    "end": t.end,
                }
                for t in self.ops
            ],
        }


def simulate(schedule: Schedule, costs: StageCosts, delays: tuple[float, ...]) -> SimResult:
    """Replays ``schedule`` (each stage strictly in its order) with ``delays`` per link.

    Raises ``PlanningError`` for an invalid schedule, bad costs or delays, or a deadlock.
    """
    S = schedule.num_stages
    lowered = lower(schedule)
    check_structure(schedule, lowered)
    costs.check(S)
    check_delays(tuple(delays), S)
    starts, ends = replay(schedule, costs, tuple(delays), lowered)
    T = max((e[-1] for e in ends if e), default=0)
    # A valid schedule runs F, B and W (or BW = B + W) once per micro-batch on every stage.
    busy = schedule.num_microbatches * sum(
        costs.tf[s] + costs.tb[s] + costs.tw[s] for s in range(S)
    )
    warmup = schedule.warmup()
    timed = [
        TimedOp(s, op, st, en)
        for s, ops in enumerate(schedule.stages)
        for op, st, en in zip(ops, starts[s], ends[s])
    ]
    return SimResult(
        iteration_time=T,
        bubble_rate=1 - busy / (S * T) if T > 0 else 0.0,
        warmup=warmup,
        delta=[warmup[s] - warmup[s + 1] for s in range(S - 1)],
        peak_activations=peak_activations(schedule, lowered),
        peak_inflight=inflight_peaks(schedule, lowered),
        ops=timed,
        schedule=schedule,
    )


def peak_activations(schedule: Schedule, lowered: Lowered | None = None) -> list[int]:
    """Per stage, the most micro-batches whose F has run but whose W (or BW) has not (an
    upper bound on memory: B frees nothing here; ``activations`` is the cap's measure)."""
    peaks = []
    for ks in (lowered if lowered is not None else lower(schedule))[0]:
        live = peak = 0
        for k in ks:
            if k == F:
                live += 1
                if live > peak:
                    peak = live
            elif k == W or k == BW:
                live -= 1
        peaks.append(peak)
    return peaks
