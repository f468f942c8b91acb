"""The generic plot of a user-defined experiment (``pmctl plot PATH.toml``).

Panel 1: iteration time vs delay, one line per method and slow-link set (x = delay in ms, the
method's no-fault cell at 0, a crash at the right end as ``inf``; error bars = std). Panel 2
(when the experiment has trace cells): iteration time over the iterations of each trace cell,
one line per method and trace, from the op logs. Missing cells are drawn as n/a and listed,
never as 0. Writes ``<root>/<name>/<name>.png``, ``.pdf`` and ``<name>.json`` (the figures'
shape: ``{"figure", "cells": [...]}``; a trace cell adds ``trace_file`` and
``per_iteration_s``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from engine.jsonio import write_json_atomic
from engine.oplog import iteration_times_ms, read_records
from figures.base import FigureReport
from figures.cells import Cell, cell_folder, links_key, rel_dir
from figures.measured import CellResult, measured_forward_ms, read_cells
from figures.prediction import draw_predicted
from figures.style import (
    METHOD_COLORS,
    METHOD_MARKERS,
    label,
    legend,
    mark_missing,
    pyplot,
    save,
)
from figures.table import compare, numbers_json

COLUMNS = ["method", "links", "delay ms", "trace", "time s", "std s", "speedup vs ZB", "/ ZB no-fault", "status"]
_LINESTYLES = ("-", "--", ":", "-.")


def plot_cells(name: str, results_root: Path, cells: list[Cell],
               trace_names: dict[str, str] | None = None) -> FigureReport:
    """Draws and saves the experiment ``name`` from its ``cells`` under ``results_root``
    (they live in ``results_root/<name>/...``); returns the report."""
    trace_names = trace_names or {}
    results = read_cells(results_root, cells)
    zb = next((r for r in results if r.cell.method == "zb" and r.cell.healthy), None)
    comparisons = compare(results, zb, None)
    per_iter = {str(rel_dir(r.cell)): _per_iteration_s(results_root, r) for r in results if r.cell.trace}

    sweep = [r for r in results if not r.cell.trace]
    traced = [r for r in results if r.cell.trace]
    plt = pyplot()
    panels = max(1, bool(sweep) + bool(traced))
    fig, axes = plt.subplots(1, panels, figsize=(5.6 * panels, 3.8), squeeze=False)
    axes = list(axes[0])
    if sweep or not traced:
        _sweep_panel(axes.pop(0), sweep, name)
    if traced:
        _trace_panel(axes.pop(0), traced, per_iter, trace_names)
    files = save(fig, Path(results_root) / name, name)

    numbers = numbers_json(name, comparisons, {})
    for d, r in zip(numbers["cells"], results):
        if r.cell.trace:
            d["trace_file"] = trace_names.get(r.cell.trace, "")
            d["per_iteration_s"] = [{"iteration": i, "time_s": round(t, 6)}
                                    for i, t in sorted(per_iter[str(rel_dir(r.cell))].items())]
    files.append(write_json_atomic(Path(results_root) / name / f"{name}.json", numbers))
    return FigureReport(
        figure=name,
        files=files,
        columns=COLUMNS,
        rows=[_row(c.result, c.speedup_vs_zb, c.ratio_nofault, trace_names) for c in comparisons],
        cells=numbers["cells"],
        missing=[f"{_key(r, trace_names)}: {r.status}{' - ' + r.reason if r.reason else ''}"
                 for r in results if not r.ok],
        notes=_notes(results, bool(traced)),
    )


def _per_iteration_s(root: Path, r: CellResult) -> dict[int, float]:
    """A finished cell's time per complete iteration (seconds); {} for any other."""
    if r.status != "done":
        return {}
    times = iteration_times_ms(read_records(cell_folder(root, r.cell)))
    return {int(i): t / 1000.0 for i, t in times.items()}


def _x(delay_s: float, x_inf: float) -> float:
    return x_inf if math.isinf(delay_s) else delay_s * 1000.0


def _sweep_panel(ax: Any, sweep: list[CellResult], name: str) -> None:
    """Iteration time vs delay: a line per method x slow-link set, the no-fault cell at 0."""
    methods = list(dict.fromkeys(r.cell.method for r in sweep))
    link_sets = list(dict.fromkeys(r.cell.links for r in sweep if not r.cell.healthy)) or [()]
    finite = sorted({0.0 if r.cell.healthy else r.cell.delay_s * 1000 for r in sweep
                     if r.cell.healthy or math.isfinite(r.cell.delay_s)})
    crash = any(not r.cell.healthy and math.isinf(r.cell.delay_s) for r in sweep)
    top = max(finite, default=0.0)
    x_inf = top + (top / max(len(finite) - 1, 1) if top else 20.0)
    span = (x_inf if crash else top) or 20.0
    width = span * 0.025
    lines = [(m, links) for m in methods for links in link_sets]
    marked: set[Any] = set()
    for li, (method, links) in enumerate(lines):
        points = [r for r in sweep if r.cell.method == method
                  and (r.cell.healthy or r.cell.links == links)]
        if not points:
            continue
        points.sort(key=lambda r: 0.0 if r.cell.healthy else r.cell.delay_s)
        xs = [0.0 if r.cell.healthy else _x(r.cell.delay_s, x_inf) for r in points]
        ys = [r.iteration_time_s for r in points]
        errs = [r.std_s if math.isfinite(r.std_s) else 0.0 for r in points]
        text = f"{label(method)} " + (f"link {links_key(links).replace('_', '-')}" if links else "(no fault)")
        ax.errorbar(xs, ys, yerr=errs, color=METHOD_COLORS.get(method, "grey"),
                    marker=METHOD_MARKERS.get(method, "o"), markersize=4, capsize=2,
                    linestyle=_LINESTYLES[link_sets.index(links) % len(_LINESTYLES)], label=text)
        draw_predicted(ax, xs, [r.predicted_s for r in points], line=True)
        offset = (li - (len(lines) - 1) / 2) * width * 1.1
        for r, x in zip(points, xs):
            if not r.ok and rel_dir(r.cell) not in marked:  # a no-fault cell is on every line
                marked.add(rel_dir(r.cell))
                mark_missing(ax, x + offset, width)
    ticks = finite + ([x_inf] if crash else [])
    ax.set_xticks(ticks, [f"{t:g}" for t in finite] + (["inf"] if crash else []))
    ax.set_xlabel("delay per message on the slow links (ms)")
    ax.set_ylabel("iteration time (s)")
    ax.set_ylim(bottom=0)
    stages = sweep[0].cell.stages if sweep else 0
    ax.set_title(f"{name}: iteration time vs delay" + (f" ({stages} stages)" if stages else ""), fontsize=9)
    legend(ax, fontsize=7)


def _trace_panel(ax: Any, traced: list[CellResult], per_iter: dict[str, dict[int, float]],
                 trace_names: dict[str, str]) -> None:
    """Iteration time over the iterations of each trace cell (one line per method x trace)."""
    hashes = list(dict.fromkeys(r.cell.trace for r in traced))
    marked: set[float] = set()
    for r in traced:
        style = _LINESTYLES[hashes.index(r.cell.trace) % len(_LINESTYLES)]
        text = f"{label(r.cell.method)} {_trace_label(r.cell, trace_names)}"
        times = per_iter[str(rel_dir(r.cell))]
        color = METHOD_COLORS.get(r.cell.method, "grey")
        if times:
            its = sorted(times)
            ax.plot(its, [times[i] for i in its], color=color, linestyle=style,
                    marker=METHOD_MARKERS.get(r.cell.method, "o"), markersize=3, label=text)
        else:
            ax.plot([], [], color=color, linestyle=style, label=f"{text}: n/a ({r.status})")
        for at in _changes(r.cell):
            if at not in marked:
                ax.axvline(at, color="#999999", linewidth=0.7, linestyle=":")
                marked.add(at)
    if not any(per_iter.values()):
        ax.text(0.5, 0.5, "n/a: no finished trace cell", transform=ax.transAxes,
                ha="center", va="center", color="#555555")
    ax.set_xlabel("iteration (dotted: fault changes)")
    ax.set_ylabel("iteration time (s)")
    ax.set_ylim(bottom=0)
    ax.set_title("iteration time under the traces", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _changes(cell: Cell) -> list[float]:
    """Iterations at which the cell's trace changes the fault (a time trace: its start)."""
    from injector.trace import TraceError, parse_trace

    if not cell.trace_text:
        return [float(cell.fault_at)]
    try:
        trace = parse_trace(cell.trace_text, cell.stages)
    except TraceError:
        return []
    if trace.kind == "time":
        return [float(cell.fault_at)]
    return [float(f.since_iteration) for f in trace if f.since_iteration < cell.iterations]


def _trace_label(cell: Cell, trace_names: dict[str, str]) -> str:
    return trace_names.get(cell.trace) or f"trace {cell.trace[:8]}"


def _key(r: CellResult, trace_names: dict[str, str]) -> str:
    return f"{r.cell.method} {_trace_label(r.cell, trace_names)}" if r.cell.trace else r.key()


def _fmt(x: float, digits: int = 3, suffix: str = "") -> str:
    return f"{x:.{digits}f}{suffix}" if math.isfinite(x) else "n/a"


def _row(r: CellResult, speedup: float, ratio: float, trace_names: dict[str, str]) -> list[str]:
    c = r.cell
    traced = bool(c.trace)
    delay = "-" if traced else "inf" if math.isinf(c.delay_s) else f"{c.delay_s * 1000:g}"
    return [label(c.method), "-" if traced else links_key(c.links), delay,
            _trace_label(c, trace_names) if traced else "-", _fmt(r.iteration_time_s), _fmt(r.std_s),
            _fmt(speedup, 2, "x"), _fmt(ratio, 2), r.status]


def _notes(results: list[CellResult], traced: bool) -> list[str]:
    tf = measured_forward_ms(results)
    out = [f"measured forward time tF = {tf:.1f} ms (median of the op logs)" if math.isfinite(tf)
           else "measured forward time tF: n/a (no finished cells)",
           "time s: mean of the last iterations (PAPER.md section 5); 0 ms: each method's no-fault cell"]
    if traced:
        out.append("trace cells: per-iteration times in the right panel and in per_iteration_s")
    return out
