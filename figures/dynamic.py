"""Dynamic stragglers (PAPER.md section 7): a time-based trace whose slow links move and whose
delays change every few seconds (``figures/traces/dynamic.trace``, made by ``pmctl trace-gen``
with the settings below); per-iteration time of ZB, PipeMorph-CPU and PipeMorph over the run's
wall clock, the injected delays underneath.

PipeMorph re-plans after each change; how many iterations that took is measured from the op
logs' iteration records, per change: the change is first in force at iteration i0 (its trace
epoch), and re-planned at the first iteration whose plan was made for exactly the delays in
force (``planned_for_ms`` = ``link_delays_ms``; a healthy snapshot: the healthy plan). The
lag is that iteration minus i0 (the engine re-plans at the next boundary: 1). The paper ran
a 7B model on 4 GPUs with traces of 60-240 events over 18 s; here the local default, fewer and
slower changes, as the caption says.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.jsonio import write_json_atomic
from engine.methods import METHODS as ALL_METHODS
from figures.base import FigureReport
from figures.cells import Cell, cell_folder, cell_label
from figures.measured import Axes, MeasuredFigure, read_cell
from figures.replan_lag import Change, replan_changes
from figures.run_series import RunSeries, read_series
from figures.style import METHOD_COLORS, label, legend, pyplot, save
from injector.trace import Trace, parse_trace, trace_hash
from injector.trace_gen import TraceGenSpec, trace_text

METHODS = ("zb", "pipemorph-cpu", "pipemorph")
QUICK_METHODS = ("zb", "pipemorph")
TRACE = TraceGenSpec(seed=2025, duration_s=12.0, min_gap_s=2.0)  # 4 stages: the shipped file
TRACE_FILE = Path(__file__).parent / "traces" / "dynamic.trace"
ITERATIONS_AFTER = 12  # iterations from fault_at on: the 12 s trace at ~1-1.5 s per iteration
COLUMNS = ["method", "iterations", "time s (last 5)", "changes seen", "re-planned", "max lag", "lags"]


def dynamic_trace(stages: int) -> str:
    """The figure's trace for ``stages`` (at 4 stages, the shipped ``dynamic.trace``)."""
    return trace_text(replace(TRACE, stages=stages))


class Dynamic(MeasuredFigure):
    name = "dynamic"
    title = "Dynamic stragglers: per-iteration time over the run"
    methods = METHODS

    def cells(self, base: Cell, quick: bool = False, axes: Axes | None = None) -> list[Cell]:
        """One trace cell per method (``--methods`` picks them; links and delays do not apply)."""
        methods = (axes or Axes()).methods or (QUICK_METHODS if quick else METHODS)
        text = dynamic_trace(base.stages)
        iterations = max(base.iterations, base.fault_at + ITERATIONS_AFTER)
        return [replace(base, figure=self.name, method=m, links=(), delay_s=0.0, trace=trace_hash(text),
                        trace_text=text, iterations=iterations) for m in methods]

    def plot(self, results_root: Path, cells: list[Cell], reference: Path | None = None) -> FigureReport:
        spec = cells[0] if cells else Cell()
        trace = parse_trace(dynamic_trace(spec.stages), spec.stages)
        plt = pyplot()
        fig, (ax_t, ax_d) = plt.subplots(2, 1, figsize=(6.0, 5.0), sharex=True,
                                         gridspec_kw={"height_ratios": [2, 1]})
        out_cells, rows, missing, notes = [], [], [], []
        end = TRACE.duration_s
        for cell in cells:
            result = read_cell(results_root, cell)
            entry: dict[str, Any] = {**result.to_json(), "cell": cell_label(cell)}
            if result.status != "done":
                missing.append(f"{cell.method}: {result.status}{' - ' + result.reason if result.reason else ''}")
                rows.append([label(cell.method), 0, "n/a", "n/a", "n/a", "n/a", ""])
                out_cells.append(entry)
                continue
            series = read_series(cell_folder(results_root, cell))
            xs = _trace_clock(series, cell.fault_at)
            entry.update(series.to_json(), trace_s=[round(x, 6) for x in xs])
            changes = replan_changes(series)
            adapts = ALL_METHODS[cell.method].adapts
            entry["changes"] = [c.to_json() for c in changes] if adapts else None
            lags = [c.lag for c in changes if c.lag is not None]
            entry["max_lag_iterations"] = max(lags) if adapts and lags else None
            if adapts:
                notes.append(_lag_note(cell, changes, len(trace)))
            rows.append(_row(cell, result.iteration_time_s, series, changes, adapts))
            out_cells.append(entry)
            if xs:
                end = max(end, xs[-1] + series.times_s[-1])
                ax_t.plot([*xs, xs[-1] + series.times_s[-1]], [*series.times_s, series.times_s[-1]],
                          drawstyle="steps-post", marker=".", markersize=3,
                          color=METHOD_COLORS[cell.method], label=label(cell.method))
        _draw_delays(ax_d, trace, spec.stages, end)
        ax_t.set_ylabel("iteration time (s)")
        ax_t.set_ylim(bottom=0)
        ax_d.set_ylabel("injected delay (ms)")
        ax_d.set_xlabel(f"seconds since the trace started (the start of iteration {spec.fault_at})")
        ax_t.set_title(f"Moving stragglers, {len(trace)} changes; {spec.stages} stages, {spec.preset}", fontsize=8)
        caption = (f"scaled down: the paper ran 7B on 4 GPUs with 60-240 changes over 18 s; here "
                   f"{len(trace)} changes over {TRACE.duration_s:g} s on {spec.stages} stages of {spec.preset}")
        fig.text(0.01, 0.005, textwrap.fill(caption, 150), fontsize=5.5, color="#555555")
        notes.append(f"trace: {replace(TRACE, stages=spec.stages).command()}")
        legend(ax_t, fontsize=7)
        legend(ax_d, fontsize=6)
        out_dir = Path(results_root) / self.name
        files = save(fig, out_dir, self.name)
        notes.append(caption)
        data = {"figure": self.name, "caption": caption, "trace": trace.to_text(), "cells": out_cells}
        numbers = write_json_atomic(out_dir / f"{self.name}.json", data)
        return FigureReport(self.name, [*files, numbers], COLUMNS, rows, out_cells, missing, notes)


def _trace_clock(series: RunSeries, fault_at: int) -> list[float]:
    """Each iteration's start in trace seconds: rank 0's trace clock reading where the op log
    has it (from ``fault_at`` on), else the wall clock shifted so ``fault_at`` starts at 0."""
    origin = next((a for it, a in zip(series.iterations, series.starts_s) if it >= fault_at), 0.0)
    out = []
    for it, start in zip(series.iterations, series.starts_s):
        head = series.heads.get(it)
        seen = head.fault.get("trace_s") if head is not None and isinstance(head.fault, dict) else None
        out.append(float(seen) if isinstance(seen, (int, float)) else start - origin)
    return out


def _draw_delays(ax: Any, trace: Trace, stages: int, end_s: float) -> None:
    """Each link's injected delay as a step line over the trace's time, up to ``end_s`` (the
    last snapshot stays in force)."""
    times = [f.at_s or 0.0 for f in trace] + [max(end_s, TRACE.duration_s)]
    for link in range(stages - 1):
        ys = [f.link_delays_s(stages)[link] * 1000 for f in trace]
        ax.step(times, [*ys, ys[-1]] if ys else [0, 0], where="post", linewidth=1.0,
                label=f"link {link}_{link + 1}")
    ax.set_ylim(bottom=0)


def _lag_note(cell: Cell, changes: list[Change], events: int) -> str:
    lags = [c.lag for c in changes if c.lag is not None]
    unseen = events - len(changes)
    text = (f"{label(cell.method)} re-planned {len(lags)} of {len(changes)} changes it saw, "
            f"lags (iterations) {lags}, max {max(lags) if lags else 'n/a'}")
    if unseen:
        text += f"; {unseen} change(s) never in force at an iteration start (or after the run)"
    return text


def _row(cell: Cell, mean_s: float, s: RunSeries, changes: list[Change], adapts: bool) -> list[Any]:
    lags = [c.lag for c in changes if c.lag is not None]
    return [label(cell.method), len(s.iterations), f"{mean_s:.3f}", len(changes),
            f"{len(lags)}" if adapts else "never", f"{max(lags)}" if adapts and lags else "n/a",
            " ".join(map(str, lags)) if adapts else ""]


FIGURE = Dynamic()
