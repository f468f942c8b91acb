"""The results store, in one module: where a cell's result lives is ``figures.cells``'
``cell_folder``; here is its schema (``CellRecord``, ``cell.json``), the reader, the one
status rule, and the writer. It lives under ``figures`` because the figures read it and the
dependency rule lets pmctl import figures, not the other way round.

A cell is written into a hidden staging folder beside its final place and renamed into place
only when complete (``cell.json`` last), so a reader never sees half a cell. A finished
result is never lost: a failed or interrupted rerun leaves it in place and goes to
``<cell>/attempts/<run_id>/``; a finished result that a new one replaces (``--force``, or a
result of another spec) moves to ``<cell>/previous/<run_id>/``. A cell whose ``cell.json``
says ``done`` with exactly the requested spec's hash is finished: it is skipped unless
``--force``; a result of another spec is stale and re-run. Failed and interrupted cells are
recorded too (with the reason) and re-run by the next ``pmctl run``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.cellspec import CellSpec
from engine.jsonio import write_json_atomic
from figures.cells import cell_folder

Cell = CellSpec
CELL_JSON = "cell.json"
DONE, FAILED, INTERRUPTED = "done", "failed", "interrupted"
STALE, MISSING = "stale", "missing"
_STAGING = ".partial-"
_ASIDE = ".old-"
ATTEMPTS, PREVIOUS = "attempts", "previous"


def read_cell_json(folder: Path) -> dict[str, Any] | None:
    """The ``cell.json`` of a cell folder, or None when absent, unreadable or not an object."""
    try:
        data = json.loads((Path(folder) / CELL_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def same_spec(cell: CellSpec, record: dict[str, Any] | None) -> bool:
    """Whether a ``cell.json`` record was produced by exactly this cell's spec: its stored
    ``spec_hash`` is the cell's identity (a result of other stages, preset, device or
    delegates, or of an older pmctl that stored no hash, is another cell's)."""
    return bool(record) and record.get("spec_hash") == cell.spec_hash


def read_status(path: Path, cell: Cell) -> tuple[str, str]:
    """The one status rule: (status, reason) of ``cell`` from its folder's ``cell.json``;
    ("missing", ...) without one, ("stale", ...) when it holds a run of another spec."""
    record = read_cell_json(path)
    if record is None:
        if not path.exists():
            return MISSING, "not run"
        return MISSING, "unreadable cell.json" if (path / CELL_JSON).exists() else "no cell.json"
    if not same_spec(cell, record):
        stored = record.get("spec") if isinstance(record.get("spec"), dict) else {}
        want = cell.to_json()
        diff = [f"{stored.get(k)} {k.replace('_', ' ')}" for k in want if stored.get(k) != want[k]]
        return STALE, f"holds a run of another spec ({', '.join(diff[:3])}): rerun it with pmctl run"
    return str(record.get("status", MISSING)), str(record.get("reason") or "")


def cell_status(results_root: Path, cell: Cell) -> str:
    """``done`` / ``failed`` / ``interrupted`` for a result of exactly this cell's spec,
    ``stale`` when the folder holds another spec's result, ``missing`` when the cell was
    never run (``read_status`` without the reason)."""
    return read_status(cell_folder(results_root, cell), cell)[0]


def is_done(results_root: Path, cell: Cell) -> bool:
    """Whether this exact cell finished (a stale result does not count)."""
    return cell_status(results_root, cell) == DONE


@dataclass
class CellRecord:
    """What ``cell.json`` holds besides the stage logs next to it."""

    spec: dict[str, Any]
    spec_hash: str  # the cell's identity (``CellSpec.spec_hash``): a result counts only for it
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
        self.final = cell_folder(results_root, cell)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = self.final.parent / f".{self.final.name}{_STAGING}{uuid.uuid4().hex[:8]}"
        self.path.mkdir()

    def commit(self, record: CellRecord) -> Path:
        """Writes ``cell.json`` and moves the folder into place; returns where it went (the
        cell folder, or ``<cell>/attempts/<run_id>`` when a finished result stays)."""
        write_json_atomic(self.path / CELL_JSON, record.to_json())
        kept = read_cell_json(self.final)
        if _finished(kept) and record.status != DONE:
            dest = self.final / ATTEMPTS / record.run_id
            dest.parent.mkdir(exist_ok=True)
            os.replace(self.path, dest)
            return dest
        aside = None
        if self.final.exists():
            # rename(2) cannot replace a non-empty folder: move the old one aside first.
            aside = self.final.parent / f".{self.final.name}{_ASIDE}{uuid.uuid4().hex[:8]}"
            os.replace(self.final, aside)
        os.replace(self.path, self.final)
        if aside is not None:
            _settle_aside(aside, self.final)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _finished(record: dict[str, Any] | None) -> bool:
    return record is not None and record.get("status") == DONE


def _settle_aside(aside: Path, final: Path) -> None:
    """An old cell moved aside during a commit: a finished one goes into the new cell's
    ``previous/`` (or back into place if the new one never arrived), anything else away."""
    record = read_cell_json(aside)
    if not _finished(record):
        shutil.rmtree(aside, ignore_errors=True)
    elif not final.exists():
        os.replace(aside, final)
    else:
        dest = final / PREVIOUS / str(record.get("run_id") or aside.name)
        dest.parent.mkdir(exist_ok=True)
        os.replace(aside, dest)


def sweep_staging(results_root: Path) -> int:
    """Cleans up after a pmctl killed mid-commit: staging folders go, an old cell moved aside
    is settled as in a commit (a finished result is never deleted); returns how many."""
    n = 0
    root = Path(results_root)
    if not root.is_dir():
        return 0
    for p in root.glob("*/*/*/.*"):
        if not p.is_dir():
            continue
        if _STAGING in p.name:
            shutil.rmtree(p, ignore_errors=True)
            n += 1
        elif _ASIDE in p.name:
            _settle_aside(p, p.parent / p.name[1:].split(_ASIDE)[0])
            n += 1
    return n


def summarize_cells(results_root: Path, cells: list[Cell]) -> dict[str, int]:
    """Counts of done / failed / interrupted / stale / missing cells (for ``status``)."""
    counts = {DONE: 0, FAILED: 0, INTERRUPTED: 0, STALE: 0, MISSING: 0}
    for c in cells:
        s = cell_status(results_root, c)
        counts[s if s in counts else MISSING] += 1
    return counts


def has_results(cells: list[Cell], results_root: Path) -> bool:
    """Whether any of ``cells`` is done with exactly its spec under the root."""
    return any(is_done(results_root, c) for c in cells)
