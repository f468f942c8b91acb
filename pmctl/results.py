"""The results store: ``results/<fig>/<method>/<links>/<delay>/`` per cell (ARCHITECTURE.md).

A cell is written into a hidden staging folder beside its final place and renamed into place
only when complete (``cell.json`` last), so a reader never sees half a cell. A cell whose
``cell.json`` says ``done`` is finished: it is skipped unless ``--force``. Failed and
interrupted cells are recorded too (with the reason) and re-run by the next ``pmctl run``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from figures.cells import Cell

CELL_JSON = "cell.json"
DONE, FAILED, INTERRUPTED = "done", "failed", "interrupted"
_STAGING = ".partial-"


def cell_dir(results_root: Path, cell: Cell) -> Path:
    """Final folder of a cell; the cell's ``figure`` field picks the figure folder."""
    return Path(results_root) / cell.figure / Path(*cell.rel_dir.parts)


def read_record(folder: Path) -> dict[str, Any] | None:
    """The ``cell.json`` of a cell folder, or None when absent or unreadable."""
    try:
        return json.loads((Path(folder) / CELL_JSON).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def cell_status(results_root: Path, cell: Cell) -> str | None:
    """``done`` / ``failed`` / ``interrupted``, or None when the cell was never run."""
    rec = read_record(cell_dir(results_root, cell))
    return rec.get("status") if rec else None


def is_done(results_root: Path, cell: Cell) -> bool:
    return cell_status(results_root, cell) == DONE


@dataclass
class CellRecord:
    """What ``cell.json`` holds besides the stage logs next to it."""

    spec: dict[str, Any]
    status: str
    run_id: str
    started: str
    ended: str
    reason: str = ""
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> stage, address, facts
    versions: dict[str, Any] = field(default_factory=dict)
    inventory: str = ""
    iteration_ms: dict[str, float] = field(default_factory=dict)
    mean_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Staging:
    """A cell being written: ``path`` is a hidden sibling of the final folder."""

    def __init__(self, results_root: Path, cell: Cell) -> None:
        self.final = cell_dir(results_root, cell)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = self.final.parent / f".{self.final.name}{_STAGING}{uuid.uuid4().hex[:8]}"
        self.path.mkdir()

    def commit(self, record: CellRecord) -> Path:
        """Writes ``cell.json`` and moves the folder into place, replacing an older attempt."""
        tmp = self.path / f".{CELL_JSON}.tmp"
        tmp.write_text(json.dumps(record.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / CELL_JSON)
        old = None
        if self.final.exists():
            # rename(2) cannot replace a non-empty folder: move the old one aside first.
            old = self.final.parent / f".{self.final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.final, old)
        os.replace(self.path, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def sweep_staging(results_root: Path) -> int:
    """Removes staging/aside folders left by a killed pmctl; returns how many."""
    n = 0
    root = Path(results_root)
    if not root.is_dir():
        return 0
    for p in root.glob("*/*/*/.*"):
        if p.is_dir() and (_STAGING in p.name or ".old-" in p.name):
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n


def summarize_cells(results_root: Path, cells: list[Cell]) -> dict[str, int]:
    """Counts of done / failed / interrupted / missing cells (for ``status`` and ``list``)."""
    counts = {DONE: 0, FAILED: 0, INTERRUPTED: 0, "missing": 0}
    for c in cells:
        s = cell_status(results_root, c)
        counts[s if s in counts else "missing"] += 1
    return counts
