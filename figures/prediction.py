"""A cell's predicted iteration time: its own op log's costs through the engine's path model.

From a done cell's op logs: per stage the median F/B/W/BW durations and the engine's
overheads (``engine.planner.engine_paths.Overheads``: dispatch gap, inline send post,
delegate hand-over, worker send, wire latency, drain + step, start), measured over the same
iterations the cell's value averages (the last ``LAST_ITERATIONS`` complete ones), so load on
the machine slows the measurement and the prediction alike. Each of those iterations is then
replayed with its logged schedule, link delays and path, and the prediction is their mean,
as the figure computes the measured value. The delegate count is the spec's, or else the
smallest K consistent with the log (a worker sends its messages one after another, each
at least the delay after the previous one).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.opkind import OpKind
from engine.oplog import (
    LAST_ITERATIONS,
    IterationRecord,
    OpRecord,
    iteration_times_ms,
    read_typed,
    summarize,
)
from engine.planner.costs import StageCosts
from engine.planner.engine_paths import EngineCosts, EngineIteration, Overheads, simulate_engine
from engine.planner.errors import PlanningError
from engine.planner.ir import Schedule

_MAX_K = 64
_TOL_MS = 0.5  # clock and sleep jitter when checking a worker's order


@dataclass(frozen=True)
class CellPrediction:
    """Predicted and measured iteration times (ms) of the iterations a cell's value averages."""

    predicted_ms: dict[int, float]
    measured_ms: dict[int, float]
    replayed_ms: dict[int, float]  # each iteration with its own logged op durations
    costs: EngineCosts
    delegates: int  # K per direction the replay used
    uses_delegates: bool  # some averaged iteration ran on the delegate path

    @property
    def predicted_s(self) -> float:
        return statistics.fmean(self.predicted_ms.values()) / 1000.0

    @property
    def measured_s(self) -> float:
        return statistics.fmean(self.measured_ms.values()) / 1000.0

    @property
    def replayed_s(self) -> float:
        """The path model alone: each iteration replayed with its own op durations."""
        return statistics.fmean(self.replayed_ms.values()) / 1000.0

    @property
    def error(self) -> float:
        """(predicted - measured) / measured."""
        return self.predicted_s / self.measured_s - 1.0


Statistic = Literal["mean", "median"]
_STATISTICS = {"mean": statistics.fmean, "median": statistics.median}


def _key(r: OpRecord) -> tuple[int, int]:
    return r.iteration, r.stage


class _Log:
    """The window's records, indexed the ways the measurements need."""

    def __init__(self, ops: list[OpRecord], heads: dict[int, IterationRecord], its: list[int]):
        keep = set(its)
        self.its, self.heads = its, heads
        self.thread: dict[tuple[int, int], list[OpRecord]] = defaultdict(list)
        self.recv: dict[tuple[int, int, str, int], OpRecord] = {}
        self.send: dict[tuple[int, int, str, int], OpRecord] = {}
        self.step: dict[tuple[int, int], OpRecord] = {}
        self.stages = 0
        for r in ops:
            if r.iteration not in keep:
                continue
            self.stages = max(self.stages, r.stage + 1)
            d = r.op.direction
            if r.op.is_recv:
                self.recv[(r.iteration, r.stage, d.value, r.mb)] = r
            elif r.op.is_send:
                self.send[(r.iteration, r.stage, d.value, r.mb)] = r
                if r.path == "inline":
                    self.thread[_key(r)].append(r)
            elif r.op is OpKind.STEP:
                self.step[_key(r)] = r
            else:
                self.thread[_key(r)].append(r)
        for recs in self.thread.values():
            recs.sort(key=lambda r: r.start_ms)

    def input_of(self, r: OpRecord) -> OpRecord | None:
        """The receive whose message compute op ``r`` consumed."""
        if r.op is OpKind.F:
            return self.recv.get((r.iteration, r.stage, "F", r.mb))
        if r.op.is_backward:
            return self.recv.get((r.iteration, r.stage, "B", r.mb))
        return None

    def sender_of(self, recv: OpRecord) -> OpRecord | None:
        d = recv.op.direction.value
        return self.send.get((recv.iteration, recv.peer if recv.peer is not None else -1, d, recv.mb))


def infer_delegates(log: _Log) -> int | None:
    """The smallest K under which every delegate worker's messages (micro-batch m on worker
    m mod K, in hand-over order) end at least the delay apart; None without delayed ones."""
    streams: dict[tuple[int, int, str], list[OpRecord]] = defaultdict(list)
    for (it, s, d, _mb), r in log.send.items():
        if r.path == "delegate" and r.delay_ms > 0 and math.isfinite(r.delay_ms):
            streams[(it, s, d)].append(r)
    if not streams:
        return None
    for k in range(1, _MAX_K + 1):
        ok = True
        for recs in streams.values():
            last: dict[int, OpRecord] = {}
            for r in sorted(recs, key=lambda r: r.start_ms):
                prev = last.get(r.mb % k)
                if prev is not None and r.end_ms - prev.end_ms < r.delay_ms - _TOL_MS:
                    ok = False
                    break
                last[r.mb % k] = r
            if not ok:
                break
        if ok:
            return k
    return _MAX_K


def measure_costs(log: _Log, delegates: int, statistic: Statistic = "mean") -> EngineCosts:
    """The window's per-stage op costs and the engine's overheads (module docstring), each
    the ``statistic`` of its samples."""
    S = log.stages
    pick = _STATISTICS[statistic]

    def _median(values: list[float], default: float = 0.0) -> float:
        return pick(values) if values else default

    durs: dict[tuple[int, OpKind], list[float]] = defaultdict(list)
    gap, send, handover, step, start = ([[] for _ in range(S)] for _ in range(5))
    wire: list[float] = []
    dwire: list[float] = []
    for (it, s), recs in log.thread.items():
        offload = log.heads[it].offload if it in log.heads else False
        first = recs[0]
        first_in = log.input_of(first)
        start[s].append(min(first.start_ms, first_in.start_ms) if first_in else first.start_ms)
        prev: OpRecord | None = None
        for r in recs:
            if r.op.is_send:  # inline: from the op's end to the post, less the delay
                if prev is not None:
                    send[s].append(r.end_ms - prev.end_ms - r.delay_ms)
                prev = r
                continue
            durs[(s, r.op)].append(r.duration_ms)
            if prev is not None:
                got = log.input_of(r)
                base = max(prev.end_ms, got.end_ms if got else 0.0)
                sent = offload and prev.op.is_compute and _sends(prev, S)
                (handover if sent else gap)[s].append(r.start_ms - base)
            prev = r
        if (it, s) in log.step and prev is not None:
            mine = [x.end_ms for (i2, s2, _d, _m), x in log.send.items()
                    if i2 == it and s2 == s and x.path == "delegate"]
            step[s].append(log.step[(it, s)].end_ms - max([prev.end_ms, *mine]))
    for r in log.recv.values():
        src = log.sender_of(r)
        if src is None or src.end_ms <= r.start_ms:  # only receives that waited show the wire
            continue
        (dwire if r.path == "delegate" else wire).append(r.end_ms - src.end_ms)
    dsend = _worker_costs(log, delegates)
    gaps = [_median(g) for g in gap]
    overheads = Overheads(
        gap_ms=tuple(max(0.0, g) for g in gaps),
        send_ms=tuple(max(0.0, _median(x)) for x in send),
        handover_ms=tuple(max(0.0, _median(h, g) - g) for h, g in zip(handover, gaps)),
        step_ms=tuple(max(0.0, _median(x)) for x in step),
        start_ms=tuple(max(0.0, _median(x)) for x in start),
        wire_ms=max(0.0, _median(wire)),
        delegate_ms=max(0.0, _median(dsend)),
        delegate_wire_ms=max(0.0, _median(dwire)),
    )

    def med(s: int, kind: OpKind) -> float:
        return _median(durs[(s, kind)], math.nan)

    tf = tuple(med(s, OpKind.F) for s in range(S))
    tb = tuple(med(s, OpKind.B) for s in range(S))
    tw = tuple(med(s, OpKind.W) for s in range(S))
    bw = tuple(med(s, OpKind.BW) for s in range(S))
    if all(math.isnan(x) for x in tb):  # 1F1B: only full backwards; split them for StageCosts
        tb = tuple(x / 2 for x in bw)
        tw = tb
    return EngineCosts(StageCosts(tf, tb, tw), overheads,
                       None if any(math.isnan(x) for x in bw) else bw)


def _sends(r: OpRecord, S: int) -> bool:
    return (r.op is OpKind.F and r.stage < S - 1) or (r.op.is_backward and r.stage > 0)


def _worker_costs(log: _Log, k: int) -> list[float]:
    """Per delegate message: its worker's busy time besides the delay (the worker starts it
    when free and handed over)."""
    streams: dict[tuple[int, int, str], list[OpRecord]] = defaultdict(list)
    for (it, s, d, _mb), r in log.send.items():
        if r.path == "delegate":
            streams[(it, s, d)].append(r)
    out = []
    for recs in streams.values():
        free: dict[int, float] = {}
        for r in sorted(recs, key=lambda r: r.start_ms):
            w = r.mb % max(1, k)
            begin = max(r.start_ms, free.get(w, 0.0))
            delay = r.delay_ms if math.isfinite(r.delay_ms) else 0.0
            out.append(r.end_ms - begin - delay)
            free[w] = r.end_ms
    return out


def _iteration(head: IterationRecord, delegates: int,
               op_ms: dict[tuple[int, str], float] | None = None) -> EngineIteration:
    schedule = Schedule.from_lists(head.schedule)
    delays = tuple(math.inf if d is None else float(d) for d in head.link_delays_ms)
    if len(delays) != schedule.num_stages - 1:
        delays = (0.0,) * (schedule.num_stages - 1)
    return EngineIteration(schedule, delays, "delegate" if head.offload else "inline",
                           max(1, delegates), op_ms)


def predict_records(ops: list[OpRecord], heads: list[IterationRecord], delegates: int = 0,
                    statistic: Statistic = "mean") -> CellPrediction | None:
    """The prediction for a cell's records (``delegates``: the spec's, 0 = infer from the log;
    ``statistic`` summarises each cost's samples); None when the records cannot be replayed
    (no complete iteration with its schedule)."""
    measured = iteration_times_ms([*ops, *heads])
    window = summarize(measured, LAST_ITERATIONS).iterations_used
    by_it = {h.iteration: h for h in heads if h.stage == 0 and h.schedule}
    window = [i for i in window if i in by_it]
    if not window:
        return None
    log = _Log(ops, by_it, window)
    k = delegates or infer_delegates(log) or 1
    costs = measure_costs(log, k, statistic)
    if any(math.isnan(x) for x in (*costs.compute.tf, *costs.compute.tb, *costs.compute.tw)):
        return None
    try:
        predicted = {i: simulate_engine(_iteration(by_it[i], k), costs).iteration_ms
                     for i in window}
        replayed = {i: simulate_engine(_iteration(by_it[i], k, _own_costs(log, i)),
                                       costs).iteration_ms for i in window}
    except PlanningError:
        return None
    return CellPrediction(predicted, {i: measured[i] for i in window}, replayed, costs, k,
                          any(by_it[i].offload for i in window))


def _own_costs(log: _Log, it: int) -> dict[tuple[int, str], float]:
    """Iteration ``it``'s compute ops with their logged durations."""
    return {(r.stage, f"{r.op.value}{r.mb}"): r.duration_ms
            for (i, _s), recs in log.thread.items() if i == it for r in recs if r.op.is_compute}


def predict_cell(cell_dir: Path, delegates: int = 0,
                 statistic: Statistic = "mean") -> CellPrediction | None:
    """``predict_records`` of the op logs in ``cell_dir``."""
    ops, heads = read_typed(cell_dir)
    return predict_records(ops, heads, delegates, statistic)


def predicted_seconds(records: Iterable[OpRecord | IterationRecord], delegates: int = 0) -> float:
    """The cell's predicted value in seconds, nan when it cannot be predicted."""
    recs = list(records)
    ops = [r for r in recs if isinstance(r, OpRecord)]
    heads = [r for r in recs if isinstance(r, IterationRecord)]
    p = predict_records(ops, heads, delegates)
    return p.predicted_s if p is not None else math.nan


PREDICTED_LABEL = "predicted (path model)"


def draw_predicted(ax: Any, xs: Sequence[float], ys: Sequence[float], line: bool = False) -> None:
    """The measured figures' one hook: the predicted values beside the measured ones, as small
    white diamonds (and a thin grey dotted line through them for line plots); nan is skipped.
    Labelled once per axes."""
    pts = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
    if not pts:
        return
    labelled = PREDICTED_LABEL in ax.get_legend_handles_labels()[1]
    px, py = zip(*pts)
    ax.plot(px, py, marker="d", markersize=4.5, markerfacecolor="white", markeredgewidth=0.8,
            markeredgecolor="black", color="0.35", linestyle=":" if line else "none", linewidth=0.6,
            label=None if labelled else PREDICTED_LABEL)
