"""What the simulated figures (4, 5, 8, sim-compare) share: their data file, simulator ops as
timeline records, and the report/JSON cells of a simulated figure.

``compute`` writes ``<fig_dir>/<fig>.data.json`` (planner output, no plotting); ``plot`` reads
it back, so ``pmctl plot`` never re-simulates and tells the user to run the figure first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from figures.base import FigureReport

if TYPE_CHECKING:  # the planner is imported only when a figure is computed
    from engine.planner.simulate import SimResult

COLUMNS = ["what", "link delays (ms)", "iteration time (ms)", "bubble rate", "warm-up", "peak activations"]


class MissingDataError(ValueError):
    """A simulated figure's data file is absent: ``pmctl run FIG`` must come first."""


def data_path(fig_dir: Path, name: str) -> Path:
    return Path(fig_dir) / f"{name}.data.json"


def write_data(fig_dir: Path, name: str, data: dict[str, Any]) -> Path:
    """Writes the figure's numbers atomically."""
    path = data_path(fig_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


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
        "ops": [
            {"kind": "op", "iter": 0, "stage": t.stage, "op": t.op.kind.value, "mb": t.op.mb,
             "start_ms": t.start, "end_ms": t.end}
            for t in result.ops
        ],
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
    columns: list[str] | None = None,
) -> FigureReport:
    """The report of a simulated figure, after writing ``<fig>.json`` beside its plot."""
    out = files[0].parent / f"{name}.json"
    body = {"figure": name, "cells": cells, "notes": notes}
    out.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    return FigureReport(name, [*files, out], columns or COLUMNS, rows, cells, [], notes)
