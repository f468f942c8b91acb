"""The numbers behind a measured figure: speedups vs ZB, ratios to the no-fault ZB run, the
artifact's same ratios, and how they become the terminal table, ``<fig>.json`` and the
``pmctl plot --json`` cells. ``gather`` reads a figure's cells once for its plot;
``bar_values`` and ``save_report`` are the measured figures' shared plotting steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.jsonio import write_json_atomic
from figures.base import FigureReport
from figures.cells import Cell, links_key
from figures.measured import (
    CellResult,
    MeasuredFigure,
    measured_forward_ms,
    nofault_cell,
    read_cell,
    read_cells,
)
from figures.reference import ReferenceCell, baseline, load_reference, lookup
from figures.style import grouped_bars, label, legend, pyplot, save

COLUMNS = [
    "method", "links", "delay ms", "time s", "std s", "speedup vs ZB",
    "/ ZB no-fault", "artifact / ZB no-fault", "artifact speedup vs ZB", "status",
]


@dataclass(frozen=True)
class Comparison:
    """One cell with its ratios (nan where a term is missing)."""

    result: CellResult
    speedup_vs_zb: float  # ZB's time under the same fault / this time
    ratio_nofault: float  # this time / our ZB no-fault time
    ref_time_s: float  # the artifact's time for this cell
    ref_ratio_nofault: float  # the artifact's time / the artifact's ZB no-fault time
    ref_speedup_vs_zb: float


def _div(a: float, b: float) -> float:
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan


def compare(
    results: list[CellResult],
    zb_nofault: CellResult | None,
    reference: list[ReferenceCell] | None = None,
) -> list[Comparison]:
    """Ratios for each result. The artifact folder is picked by the cell's own figure folder
    (a fig16 cell -> ``fig14_16``; fig18's cells live in fig15's, so they read ``fig15``)."""
    nan = math.nan
    zb_healthy = zb_nofault.iteration_time_s if zb_nofault and zb_nofault.ok else nan
    ref_base = baseline(reference) if reference else None
    out = []
    for r in results:
        zb = next((z for z in results if z.cell.method == "zb" and z.cell.same_fault(r.cell)), None)
        zb_time = zb.iteration_time_s if zb and zb.ok else nan
        ref = ref_zb = None
        if reference:
            links = links_key(r.cell.links)
            ref = lookup(reference, r.cell.method, links, r.cell.delay_s, r.cell.figure)
            ref_zb = lookup(reference, "zb", links, r.cell.delay_s, r.cell.figure)
        ref_time = ref.iteration_time_s if ref else nan
        out.append(
            Comparison(
                r,
                _div(zb_time, r.iteration_time_s),
                _div(r.iteration_time_s, zb_healthy),
                ref_time,
                _div(ref_time, ref_base.iteration_time_s if ref_base else nan),
                _div(ref_zb.iteration_time_s if ref_zb else nan, ref_time),
            )
        )
    return out


def _fmt(x: float, digits: int = 3, suffix: str = "") -> str:
    return f"{x:.{digits}f}{suffix}" if math.isfinite(x) else "n/a"


def rows(comparisons: list[Comparison]) -> list[list[Any]]:
    """Terminal table rows (strings), one per cell, in ``COLUMNS`` order."""
    out = []
    for c in comparisons:
        r = c.result
        out.append(
            [
                label(r.cell.method),
                links_key(r.cell.links),
                f"{r.cell.delay_s * 1000:g}",
                _fmt(r.iteration_time_s),
                _fmt(r.std_s),
                _fmt(c.speedup_vs_zb, 2, "x"),
                _fmt(c.ratio_nofault, 2),
                _fmt(c.ref_ratio_nofault, 2),
                _fmt(c.ref_speedup_vs_zb, 2, "x"),
                r.status,
            ]
        )
    return out


def missing(results: list[CellResult]) -> list[str]:
    """One line per cell drawn as missing: which cell and why."""
    return [
        f"{r.key()}: {r.status}{' - ' + r.reason if r.reason else ''}"
        for r in results
        if not r.ok
    ]


def _num(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


def numbers_json(name: str, comparisons: list[Comparison], extra: dict[str, Any]) -> dict[str, Any]:
    """The content of ``<fig>.json``: every cell with its status and ratios, plus ``extra``."""
    cells = []
    for c in comparisons:
        d = c.result.to_json()
        d.update(
            bubble_rate=_num(c.result.bubble_rate),
            forward_ms=_num(c.result.forward_ms),
            speedup_vs_zb=_num(c.speedup_vs_zb),
            ratio_to_zb_nofault=_num(c.ratio_nofault),
            artifact_time_s=_num(c.ref_time_s),
            artifact_ratio_to_zb_nofault=_num(c.ref_ratio_nofault),
            artifact_speedup_vs_zb=_num(c.ref_speedup_vs_zb),
        )
        cells.append(d)
    return {"figure": name, "cells": cells, **extra}


def build_report(
    name: str,
    out_dir: Path,
    files: list[Path],
    comparisons: list[Comparison],
    notes: list[str],
    extra: dict[str, Any] | None = None,
) -> FigureReport:
    """Writes ``<fig>.json`` next to the plot and returns the report for the terminal."""
    numbers = write_json_atomic(out_dir / f"{name}.json", numbers_json(name, comparisons, extra or {}))
    results = [c.result for c in comparisons]
    return FigureReport(
        figure=name,
        files=[*files, numbers],
        columns=COLUMNS,
        rows=rows(comparisons),
        cells=[r.to_json() for r in results],
        missing=missing(results),
        notes=notes,
    )


@dataclass(frozen=True)
class Measured:
    """A measured figure's inputs, read once: its cells' results and their comparisons."""

    comparisons: list[Comparison]
    zb_nofault: CellResult
    forward_ms: float  # the figure's measured tF
    has_reference: bool

    @property
    def results(self) -> list[CellResult]:
        return [c.result for c in self.comparisons]

    def find(self, method: str, fault: Cell) -> Comparison | None:
        """The comparison of ``method``'s cell under the same fault as ``fault``."""
        for c in self.comparisons:
            if c.result.cell.method == method and c.result.cell.same_fault(fault):
                return c
        return None

    def scaled_reference(self, c: Comparison) -> float:
        """The artifact's value in our units: its ratio to its own ZB no-fault run times ours
        (absolute times differ by hardware; ratios carry over)."""
        if not self.zb_nofault.ok:
            return math.nan
        return c.ref_ratio_nofault * self.zb_nofault.iteration_time_s

    @property
    def tf_text(self) -> str:
        """``tF = 31 ms`` (measured), for titles and axis labels beside the delays."""
        return f"measured tF = {self.forward_ms:.0f} ms" if math.isfinite(self.forward_ms) else "tF n/a"

    def notes(self) -> list[str]:
        """The notes every measured figure states: tF beside the delays, the overlay basis."""
        tf = (
            f"measured forward time tF = {self.forward_ms:.1f} ms (median of the op logs)"
            if math.isfinite(self.forward_ms)
            else "measured forward time tF: n/a (no finished cells)"
        )
        out = [f"{tf}; the artifact's A10 had tF 28-36 ms"]
        if self.has_reference:
            out.append(
                "artifact numbers are drawn as ratios to the artifact's ZB no-fault time, scaled by ours"
                + ("" if self.zb_nofault.ok else " - not drawn: our fig20 ZB no-fault cell is missing")
            )
        return out


def gather(results_root: Path, cells: list[Cell], reference: Path | None) -> Measured:
    """Reads a figure's cells and compares them (ratios to the ZB no-fault cell of the same
    spec, drawn or not)."""
    results = read_cells(results_root, cells)
    zb = next((r for r in results if r.cell.method == "zb" and r.cell.healthy), None)
    if zb is None and cells:
        zb = read_cell(results_root, nofault_cell(cells[0], "zb"))
    zb = zb or CellResult(nofault_cell(Cell(), "zb"), "missing", *(math.nan,) * 4, "no cells")
    ref = load_reference(reference)
    return Measured(compare(results, zb, ref), zb, measured_forward_ms(results), ref is not None)


Bars = dict[tuple[str, str], tuple[float, float]]


def bar_values(
    data: Measured, group: Callable[[Cell], str]
) -> tuple[Bars, dict[tuple[str, str], float]]:
    """``grouped_bars``' inputs: (group, method) -> (time s, std s), and -> the scaled artifact
    value, with ``group`` naming each cell's group."""
    values: Bars = {}
    ref: dict[tuple[str, str], float] = {}
    for c in data.comparisons:
        key = (group(c.result.cell), c.result.cell.method)
        values[key] = (c.result.iteration_time_s, c.result.std_s)
        ref[key] = data.scaled_reference(c)
    return values, ref


def predicted_values(data: Measured, group: Callable[[Cell], str]) -> dict[tuple[str, str], float]:
    """(group, method) -> the cell's predicted time (s), for ``grouped_bars``."""
    return {(group(c.result.cell), c.result.cell.method): c.result.predicted_s
            for c in data.comparisons}


def save_report(
    name: str, results_root: Path, fig: Any, comparisons: list[Comparison], notes: list[str]
) -> FigureReport:
    """Saves the plot to ``<results_root>/<name>/`` and writes ``<name>.json`` beside it."""
    out_dir = Path(results_root) / name
    files = save(fig, out_dir, name)
    return build_report(name, out_dir, files, comparisons, notes)


def bar_chart_report(
    figure: MeasuredFigure,
    results_root: Path,
    data: Measured,
    groups: list[str],
    group_of: Callable[[Cell], str],
    methods: list[str],
    width: float,
    notes: list[str],
) -> FigureReport:
    """One grouped bar chart of iteration time (a bar per method in each group, the artifact's
    scaled value marked), saved with the figure's report."""
    values, ref = bar_values(data, group_of)
    fig, ax = pyplot().subplots(figsize=(width, 3.4))
    grouped_bars(ax, groups, methods, values, ref, predicted_values(data, group_of))
    ax.set_ylabel("iteration time (s)")
    ax.set_title(f"{figure.title} ({data.tf_text})", fontsize=9)
    legend(ax, fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    return save_report(figure.name, results_root, fig, data.comparisons, notes)
