"""A cell's run over time, from its op logs: each complete iteration's time, when it started on
the run's wall clock, and the plan it ran (the figures that draw a run, not one number:
``nic-crash`` and ``dynamic``).

The wall clock is the sum of the iteration times before an iteration (the op log's times
restart at each iteration's agreed start; the short gap between iterations is left out). An
iteration that did not complete (a stage stopped in it) has no time. Pure reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.oplog import IterationRecord, iteration_times_ms, read_typed


@dataclass(frozen=True)
class RunSeries:
    """Complete iterations in order, with their time (s) and start on the wall clock (s)."""

    iterations: tuple[int, ...] = ()
    times_s: tuple[float, ...] = ()
    starts_s: tuple[float, ...] = ()
    heads: dict[int, IterationRecord] = field(default_factory=dict)  # one stage's header per iteration

    @property
    def ends_s(self) -> tuple[float, ...]:
        return tuple(a + t for a, t in zip(self.starts_s, self.times_s))

    def mean_s(self, lo: int = 0, hi: int | None = None) -> float:
        """Mean time of the complete iterations in [lo, hi); nan when none."""
        vals = [t for it, t in zip(self.iterations, self.times_s) if it >= lo and (hi is None or it < hi)]
        return sum(vals) / len(vals) if vals else math.nan

    def to_json(self) -> dict[str, Any]:
        return {"iterations": list(self.iterations),
                "per_iteration_s": [round(t, 6) for t in self.times_s],
                "wall_clock_s": [round(t, 6) for t in self.starts_s]}


def read_series(folder: Path) -> RunSeries:
    """The run of the cell in ``folder`` (empty without op logs)."""
    ops, heads = read_typed(folder)
    times = iteration_times_ms([*heads, *ops])
    its = sorted(times)
    starts, clock = [], 0.0
    for it in its:
        starts.append(clock)
        clock += times[it] / 1000.0
    by_iter: dict[int, IterationRecord] = {}
    for h in sorted(heads, key=lambda h: h.stage, reverse=True):
        by_iter[h.iteration] = h  # stage 0's wins: every stage logs the same decision
    return RunSeries(tuple(its), tuple(times[i] / 1000.0 for i in its), tuple(starts), by_iter)
