"""NIC crash (PAPER.md section 7): the GPU-direct path goes down everywhere at one iteration
(trace ``K;;inf``); per-iteration time and throughput over the run's wall clock for ZB, 1F1B,
PipeMorph-CPU and PipeMorph.

ZB and 1F1B have no other path: they stop at the crash with the engine's clean LinkDownError
(recorded as a finished, ``stopped`` cell: ``pmctl.expected_stop``) and are drawn up to there,
with where and why. PipeMorph-CPU and PipeMorph keep training on the delegates. Throughput =
tokens per iteration (micro-batches x micro-batch size x sequence length of the preset) / the
iteration time. The paper's run is a 14B model on 8 GPUs, 300 iterations, five crashes; here
one crash on the local default (4 stages, cpu-small), as the caption says.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.jsonio import write_json_atomic
from engine.oplog import LAST_ITERATIONS
from engine.presets import PRESETS
from figures.base import FigureReport
from figures.cells import Cell, cell_folder, cell_label
from figures.measured import Axes, MeasuredFigure, read_cell
from figures.run_series import RunSeries, read_series
from figures.style import DELAY_COLOR, METHOD_COLORS, label, legend, pyplot, save
from injector.trace import trace_hash

METHODS = ("zb", "1f1b", "pipemorph-cpu", "pipemorph")
QUICK_METHODS = ("zb", "pipemorph")
MIN_ITERATIONS = 10  # enough iterations after the crash for its line to show
# Iteration 0 starts up (allocations, warm caches) and 1 is the one profiling takes
# (engine.cellspec's run shape): the "before" mean starts after them.
FIRST_STEADY = 2
COLUMNS = ["method", "status", "iterations", "before s", "after s", "before tok/s", "after tok/s", "note"]
_DRAWN = ("done", "stopped")


def crash_iteration(base: Cell) -> int:
    """The iteration the crash happens: one after the spec's fault iteration (3 by default),
    so the profiled iterations before it are healthy."""
    return base.fault_at + 1


def crash_trace(base: Cell) -> str:
    """The cell's trace text: the NIC crash from ``crash_iteration`` on."""
    return f"{crash_iteration(base)};;inf\n"


def before_window(crash: int) -> tuple[int, int]:
    """The iterations [lo, hi) of the "before" mean: the last ``LAST_ITERATIONS`` before the
    crash (as fig15 averages its last 5), none before ``FIRST_STEADY`` (empty when the crash
    comes earlier: the mean is then n/a)."""
    return max(FIRST_STEADY, crash - LAST_ITERATIONS), crash


def tokens_per_iteration(cell: Cell) -> int:
    """Micro-batches x micro-batch size x sequence length."""
    p = PRESETS[cell.preset]
    return cell.microbatches * p.micro_batch * p.seq


class NicCrash(MeasuredFigure):
    name = "nic-crash"
    title = "NIC crash: per-iteration time and throughput over the run"
    methods = METHODS

    def cells(self, base: Cell, quick: bool = False, axes: Axes | None = None) -> list[Cell]:
        """One trace cell per method (``--methods`` picks them; links and delays do not apply)."""
        methods = (axes or Axes()).methods or (QUICK_METHODS if quick else METHODS)
        text = crash_trace(base)
        iterations = max(base.iterations, MIN_ITERATIONS, crash_iteration(base) + 2)
        return [replace(base, figure=self.name, method=m, links=(), delay_s=0.0, trace=trace_hash(text),
                        trace_text=text, iterations=iterations) for m in methods]

    def plot(self, results_root: Path, cells: list[Cell], reference: Path | None = None) -> FigureReport:
        crash = crash_iteration(cells[0]) if cells else 0
        plt = pyplot()
        fig, (ax_t, ax_q) = plt.subplots(2, 1, figsize=(6.0, 5.2), sharex=True)
        out_cells, rows, missing = [], [], []
        for cell in cells:
            result = read_cell(results_root, cell)
            entry = {**result.to_json(), "cell": cell_label(cell), "crash_iteration": crash,
                     "tokens_per_iteration": tokens_per_iteration(cell)}
            if result.status not in _DRAWN:
                missing.append(f"{cell.method}: {result.status}{' - ' + result.reason if result.reason else ''}")
                rows.append([label(cell.method), result.status, 0, "n/a", "n/a", "n/a", "n/a", result.reason])
                out_cells.append(entry)
                continue
            series = read_series(cell_folder(results_root, cell))
            entry.update(_numbers(cell, series, crash))
            if result.status == "stopped":
                entry["stopped"] = result.reason
            _draw(ax_t, ax_q, cell, series, crash, result.reason if result.status == "stopped" else "")
            rows.append(_row(cell, result.status, entry))
            out_cells.append(entry)
        ax_t.set_ylabel("iteration time (s)")
        ax_q.set_ylabel("throughput (tokens/s)")
        ax_q.set_xlabel("wall clock (s, sum of iteration times)")
        ax_t.set_ylim(bottom=0)
        ax_q.set_ylim(bottom=0)
        spec = cells[0] if cells else Cell()
        ax_t.set_title(f"NIC crash at iteration {crash} (GPU-direct path down on every link); "
                       f"{spec.stages} stages, {spec.preset}", fontsize=8)
        caption = (f"scaled down: the paper ran a 14B model on 8 GPUs (PP8, 24 micro-batches, 300 "
                   f"iterations, five crashes); here {spec.stages} stages of {spec.preset}, "
                   f"{spec.microbatches} micro-batches, {spec.iterations} iterations, one crash")
        fig.text(0.01, 0.005, textwrap.fill(caption, 150), fontsize=5.5, color="#555555")
        legend(ax_t, fontsize=7)
        out_dir = Path(results_root) / self.name
        files = save(fig, out_dir, self.name)
        lo, hi = before_window(crash)
        span = f"over iterations {lo}..{hi - 1}" if hi > lo else "n/a (no iteration before the crash)"
        notes = [caption, f"wall clock = the sum of the iteration times; the 'before' mean is {span}, "
                 "after start-up and the profiled iteration; the crash iteration of a method that "
                 "survives is in its 'after' mean"]
        data = {"figure": self.name, "crash_iteration": crash, "caption": caption, "cells": out_cells}
        numbers = write_json_atomic(out_dir / f"{self.name}.json", data)
        return FigureReport(self.name, [*files, numbers], COLUMNS, rows, out_cells, missing, notes)


def _numbers(cell: Cell, s: RunSeries, crash: int) -> dict[str, Any]:
    tokens = tokens_per_iteration(cell)
    before, after = s.mean_s(*before_window(crash)), s.mean_s(crash)
    return {
        **s.to_json(),
        "throughput_tokens_s": [round(tokens / t, 3) for t in s.times_s],
        "completed_iterations": len(s.iterations),
        "mean_before_s": _num(before), "mean_after_s": _num(after),
        "throughput_before_tokens_s": _num(tokens / before if before > 0 else math.nan),
        "throughput_after_tokens_s": _num(tokens / after if after > 0 else math.nan),
    }


def _num(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


def _row(cell: Cell, status: str, e: dict[str, Any]) -> list[Any]:
    def f(x: float | None, digits: int) -> str:
        return "n/a" if x is None else f"{x:.{digits}f}"

    note = e.get("stopped", "")
    return [label(cell.method), status, e["completed_iterations"], f(e["mean_before_s"], 3),
            f(e["mean_after_s"], 3), f(e["throughput_before_tokens_s"], 0),
            f(e["throughput_after_tokens_s"], 0), note]


def _draw(ax_t: Any, ax_q: Any, cell: Cell, s: RunSeries, crash: int, stopped: str) -> None:
    """Step lines of time and throughput; the crash marked; a stopped method ends in an x."""
    if not s.iterations:
        return
    color = METHOD_COLORS[cell.method]
    tokens = tokens_per_iteration(cell)
    xs = [*s.starts_s, s.ends_s[-1]]
    ts = [*s.times_s, s.times_s[-1]]
    ax_t.step(xs, ts, where="post", color=color, label=label(cell.method), linewidth=1.2)
    ax_q.step(xs, [tokens / t for t in ts], where="post", color=color, linewidth=1.2)
    mean_q = tokens * len(s.times_s) / sum(s.times_s)
    ax_q.plot([0, xs[-1]], [mean_q, mean_q], color=color, linestyle="--", linewidth=0.7)
    if crash in s.iterations:
        x = s.starts_s[s.iterations.index(crash)]
        ax_t.axvline(x, color=DELAY_COLOR, linestyle=":", linewidth=0.8)
    if stopped:
        end = xs[-1]
        for ax, y in ((ax_t, ts[-1]), (ax_q, tokens / ts[-1])):
            ax.plot([end], [y], marker="x", markersize=8, color=color, linestyle="none")
        ax_t.annotate(f"{label(cell.method)} {stopped}"[:90], (end, ts[-1]), fontsize=5.5, color=color,
                      xytext=(4, 4 + 8 * METHODS.index(cell.method) if cell.method in METHODS else 4),
                      textcoords="offset points")


FIGURE = NicCrash()
