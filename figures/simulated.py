"""What the simulated figures (4, 5, 8, 19, sim-compare) share: the ``SimulatedFigure`` base,
planner scenarios, their data file, simulator ops as timeline records, and the report/JSON
cells of a simulated figure.

``compute`` writes ``<fig_dir>/<fig>.data.json`` (planner output, no plotting); ``plot`` reads
it back, so ``pmctl plot`` never re-simulates and tells the user to run the figure first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.jsonio import write_json_atomic
from engine.oplog import OpRecord
from figures.base import FigureReport, Progress
from figures.cells import Cell

if TYPE_CHECKING:  # the planner is imported only when a figure is computed
    from engine.planner.simulate import SimResult, TimedOp

COLUMNS = ["what", "link delays (ms)", "iteration time (ms)", "bubble rate", "warm-up", "peak activations"]


class SimulatedFigure:
    """Base of the simulated figures: no measured cells; ``compute`` writes the data file."""

    name: str
    title: str
    kind = "simulated"
    estimate_s = 1.0  # rough ``pmctl run`` wall time

    def cells(self, base: Cell, quick: bool = False, axes: object = None) -> list[Cell]:
        """None: a simulated figure runs nothing on the cluster."""
        return []

    def estimate_seconds(self, base: Cell, quick: bool, extras: bool = False) -> float:
        """Rough wall time of ``compute`` (with ``extras``: including the extra lines)."""
        return self.estimate_s

    def compute(
        self, fig_dir: Path, quick: bool, progress: Progress | None = None, extras: bool = False
    ) -> None:
        """Computes the numbers into ``<fig_dir>/<fig>.data.json``. ``extras``: also the
        expensive extra lines, where a figure has any (fig19); the others ignore it."""
        raise NotImplementedError


def simulate_uniform(
    schedule: str, stages: int, microbatches: int, cost_ms: float, delays: tuple[float, ...]
) -> SimResult:
    """``schedule`` with every op ``cost_ms``, planned as ``pmctl simulate`` plans it (zb and
    1f1b for a healthy pipeline, the adaptive ones for ``delays``) and replayed under ``delays``."""
    from engine.planner.costs import StageCosts
    from engine.planner.scenario import Scenario, run_scenario

    costs = StageCosts.uniform(stages, cost_ms, cost_ms, cost_ms)
    return run_scenario(Scenario(schedule, stages, microbatches, costs, tuple(delays))).result


def op_records(ops: list[TimedOp]) -> list[OpRecord]:
    """Simulator ops as op-log records (iteration 0, ms, no path), as ``figures.timeline``
    draws them."""
    return [OpRecord(0, t.stage, t.op.kind, t.op.mb, t.start, t.end) for t in ops]


class MissingDataError(ValueError):
    """A simulated figure's data file is absent: ``pmctl run FIG`` must come first."""


def data_path(fig_dir: Path, name: str) -> Path:
    """Where a simulated figure keeps its numbers: ``<fig_dir>/<name>.data.json``."""
    return Path(fig_dir) / f"{name}.data.json"


def write_data(fig_dir: Path, name: str, data: dict[str, Any]) -> Path:
    """Writes the figure's numbers atomically."""
    return write_json_atomic(data_path(fig_dir, name), data)


def read_data(results_root: Path, name: str) -> dict[str, Any]:
    """The figure's numbers; ``MissingDataError`` (one line with the fix) when not computed."""
    path = data_path(Path(results_root) / name, name)
    if not path.is_file():
        raise MissingDataError(f"{path}: no simulated data for {name} (run `pmctl run {name}` first)")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def run_json(label: str, delays: tuple[float, ...], result: SimResult) -> dict[str, Any]:
    """One simulated run as stored in the data file (ops in the op-log record shape)."""
    return {
        "label": label,
        "delays_ms": list(delays),
        "iteration_time_ms": result.iteration_time,
        "bubble_rate": result.bubble_rate,
        "warmup": list(result.warmup),
        "peak_activations": list(result.peak_activations),
        "schedule": result.schedule.to_lists(),
        "ops": [r.to_json() for r in op_records(result.ops)],
    }


def row(run: dict[str, Any]) -> list[Any]:
    """A terminal-table row of one stored run."""
    return [
        run["label"],
        ",".join(f"{d:g}" for d in run["delays_ms"]),
        f"{run['iteration_time_ms']:g}",
        f"{run['bubble_rate'] * 100:.1f}%",
        " ".join(map(str, run["warmup"])),
        " ".join(map(str, run["peak_activations"])),
    ]


def cell_json(method: str, delays_ms: list[float], time_ms: float) -> dict[str, Any]:
    """A ``pmctl plot --json`` cell of a simulated run (status ``simulated``, seconds)."""
    slow = [i for i, d in enumerate(delays_ms) if d > 0]
    return {
        "method": method,
        "links": ",".join(f"{i}_{i + 1}" for i in slow) or "none",
        "delay_s": max(delays_ms, default=0.0) / 1000.0,
        "iteration_time_s": time_ms / 1000.0,
        "std_s": 0.0,
        "status": "simulated",
    }


def report(
    name: str, files: list[Path], rows: list[list[Any]], cells: list[dict[str, Any]], notes: list[str],
    columns: list[str] | None = None, extra: dict[str, Any] | None = None,
) -> FigureReport:
    """The report of a simulated figure, after writing ``<fig>.json`` (with ``extra``'s keys)
    beside its plot."""
    body = {"figure": name, "cells": cells, "notes": notes, **(extra or {})}
    out = write_json_atomic(files[0].parent / f"{name}.json", body)
    return FigureReport(name, [*files, out], columns or COLUMNS, rows, cells, [], notes)
