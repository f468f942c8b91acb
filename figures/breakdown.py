"""Breakdown (the paper's motivation figure, PAPER.md section 7): for each method and delay of
fig15, how an iteration's time splits into compute, bubbles and head-of-line blocking.

The cells are fig15's, the same specs in the same folders (``pmctl run fig15`` fills both).
The split is measured from the op logs (``figures.op_breakdown``: on the critical stage,
compute = F/B/W/BW time, head-of-line = inline sends stalled by an injected delay (on CUDA the
injected delay itself: a sleep kernel on the compute stream that the send does not wait for),
bubble = the rest), one stacked bar per method and delay. ``breakdown.json`` also has the paper's
subtraction view: per method and delay, its no-fault time, then bubble = PipeMorph-CPU's time
minus that, then head-of-line = the method's time minus PipeMorph-CPU's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from engine.jsonio import write_json_atomic
from engine.oplog import read_typed
from figures.base import FigureReport
from figures.cells import Cell, cell_folder, cell_label
from figures.fig15 import FIGURE as FIG15
from figures.fig15 import zero_ms_source
from figures.measured import Axes, CellResult, MeasuredFigure, read_cells
from figures.op_breakdown import Breakdown, breakdown
from figures.style import METHOD_COLORS, label, mark_missing, pyplot, save

COLUMNS = ["method", "delay ms", "time s", "critical stage", "compute s", "bubble s", "head-of-line s", "status"]
PARTS = (("compute_ms", "compute", ""), ("bubble_ms", "bubble", "..."), ("hol_ms", "head-of-line blocking", "xxx"))
CAPTION = ("op logs, critical stage (most compute + head-of-line): compute = F/B/W/BW, head-of-line "
           "= inline sends stalled by the injected delay (CUDA: the delay's sleep kernel), bubble = "
           "the rest of the iteration")


class BreakdownFigure(MeasuredFigure):
    name = "breakdown"
    title = "Where the iteration time goes: compute, bubbles, head-of-line blocking"
    methods = FIG15.methods

    def cells(self, base: Cell, quick: bool = False, axes: Axes | None = None) -> list[Cell]:
        """fig15's cells (its delays, its 0 ms sources): shared folders, one run for both."""
        return FIG15.cells(base, quick, axes or Axes())

    def plot(self, results_root: Path, cells: list[Cell], reference: Path | None = None) -> FigureReport:
        results = read_cells(results_root, cells)
        splits = {cell_label(r.cell): _split(results_root, r) for r in results}
        faulty = [r for r in results if not r.cell.healthy]
        methods = list(dict.fromkeys(r.cell.method for r in faulty)) or list(self.methods)
        delays = sorted({r.cell.delay_s for r in faulty})
        points = [(0.0, m, _zero_point(results, m)) for m in methods]
        points += [(d, m, next((r for r in faulty if r.cell.method == m and r.cell.delay_s == d), None))
                   for d in delays for m in methods]
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(max(5.2, 1.1 * (len(delays) + 1)), 3.8))
        width = 0.8 / max(len(methods), 1)
        groups = [0.0, *delays]
        rows, entries = [], []
        for delay, method, r in points:
            x = groups.index(delay) + (methods.index(method) - (len(methods) - 1) / 2) * width
            b = splits.get(cell_label(r.cell)) if r is not None else None
            if b is None:
                mark_missing(ax, x, width * 0.95)
            else:
                _bar(ax, x, width * 0.95, method, b)
            rows.append(_row(method, delay, r, b))
            entries.append({"method": method, "delay_ms": round(delay * 1000, 6),
                            "cell": cell_label(r.cell) if r else None,
                            "breakdown": b.to_json() if b else None})
        ax.set_xticks(range(len(groups)), [f"{d * 1000:g}" for d in groups])
        ax.set_xlabel("delay on the last link (ms); 0 = no fault (fig15's 0 ms sources)")
        ax.set_ylabel("iteration time (s)")
        ax.set_title(self.title, fontsize=8)
        _legend(ax, methods)
        fig.text(0.01, 0.005, CAPTION, fontsize=5.5, color="#555555")
        out_dir = Path(results_root) / self.name
        files = save(fig, out_dir, self.name)
        subtraction = subtraction_view(results, methods, delays)
        cells_json = [{**r.to_json(), "cell": cell_label(r.cell),
                       "breakdown": splits[cell_label(r.cell)].to_json() if splits[cell_label(r.cell)] else None}
                      for r in results]
        data = {"figure": self.name, "caption": CAPTION, "cells": cells_json, "bars": entries,
                "subtraction": subtraction}
        numbers = write_json_atomic(out_dir / f"{self.name}.json", data)
        missing = [f"{r.key()}: {r.status}{' - ' + r.reason if r.reason else ''}" for r in results if not r.ok]
        notes = [CAPTION, "the paper's subtraction view (no-fault, + bubble = PipeMorph-CPU - no-fault, "
                 "+ head-of-line = method - PipeMorph-CPU) is in breakdown.json's 'subtraction'"]
        return FigureReport(self.name, [*files, numbers], COLUMNS, rows, cells_json, missing, notes)


def _split(root: Path, r: CellResult) -> Breakdown | None:
    if not r.ok:
        return None
    ops, heads = read_typed(cell_folder(root, r.cell))
    return breakdown([*heads, *ops], device=r.cell.device)


def _zero_point(results: list[CellResult], method: str) -> CellResult | None:
    """``method``'s 0 ms cell as fig15 draws it (its own, or All-CPU's for the offloading ones)."""
    healthy = [r for r in results if r.cell.healthy]
    source = zero_ms_source(method)
    return next((r for r in healthy if r.cell.method == source),
                next((r for r in healthy if r.cell.method == method), None))


def _bar(ax: Any, x: float, w: float, method: str, b: Breakdown) -> None:
    crit = b.critical.to_json()
    bottom = 0.0
    for key, _name, hatch in PARTS:
        h = crit[key] / 1000.0
        ax.bar(x, h, w, bottom=bottom, color=METHOD_COLORS[method], alpha=1.0 if not hatch else 0.45,
               hatch=hatch or None, edgecolor="white", linewidth=0.3)
        bottom += h


def _legend(ax: Any, methods: list[str]) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=METHOD_COLORS[m], label=label(m)) for m in methods]
    handles += [Patch(facecolor="#bbbbbb", hatch=h or None, label=n) for _k, n, h in PARTS]
    ax.legend(handles=handles, fontsize=6, ncol=2)


def _row(method: str, delay: float, r: CellResult | None, b: Breakdown | None) -> list[Any]:
    if r is None or b is None:
        return [label(method), f"{delay * 1000:g}", "n/a", "n/a", "n/a", "n/a", "n/a",
                r.status if r else "missing"]
    c = b.critical
    return [label(method), f"{delay * 1000:g}", f"{b.iteration_ms / 1000:.3f}", c.stage,
            f"{c.compute_ms / 1000:.3f}", f"{c.bubble_ms / 1000:.3f}", f"{c.hol_ms / 1000:.3f}", r.status]


def subtraction_view(results: list[CellResult], methods: list[str], delays: list[float]) -> list[dict[str, Any]]:
    """The paper's stacked bar per method and delay: no-fault time, + bubble (PipeMorph-CPU's
    time - no-fault), + head-of-line (the method's time - PipeMorph-CPU's); None where a term is
    missing. The no-fault time is the method's fig15 0 ms point."""
    def time(method: str, delay: float) -> float:
        r = next((r for r in results if r.cell.method == method and not r.cell.healthy
                  and r.cell.delay_s == delay), None)
        return r.iteration_time_s if r is not None and r.ok else math.nan

    out = []
    for m in methods:
        zero = _zero_point(results, m)
        nofault = zero.iteration_time_s if zero is not None and zero.ok else math.nan
        for d in delays:
            cpu, own = time("pipemorph-cpu", d), time(m, d)
            out.append({"method": m, "delay_ms": round(d * 1000, 6), "nofault_s": _num(nofault),
                        "bubble_s": _num(cpu - nofault), "hol_s": _num(own - cpu), "time_s": _num(own)})
    return out


def _num(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


FIGURE = BreakdownFigure()
