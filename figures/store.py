"""The results store, in one module: where a cell's result lives is ``figures.cells``'
``cell_folder``; here is its schema (``CellRecord``, ``cell.json``), the reader, the one
status rule, and the writer. It lives under ``figures`` because the figures read it and the
dependency rule lets pmctl import figures, not the other way round.

A cell is written into a hidden staging folder beside its final place and renamed into place
only when complete (``cell.json`` last, every file fsynced before the rename and the folder
after it), so a reader never sees half a cell, even after a power cut. A finished result is
never lost: a failed or interrupted rerun leaves it in place and goes to
``<cell>/attempts/<run_id>/``; a finished result that a new one replaces (``--force``, or a
result of another spec) moves to ``<cell>/previous/<run_id>/``; a cell whose ``cell.json`` is
unreadable (it may have been finished) moves to ``<cell>/attempts/<time>-corrupt/``; a replaced
cell's own ``previous/`` and ``attempts/`` move up into the new one. A cell that could not be
recorded at all (a full disk) keeps its logs in ``<cell>/attempts/<run_id>/`` (``keep``). A
cell whose ``cell.json`` says ``done`` with exactly the requested spec's hash is finished: it
is skipped unless ``--force``; a result of another spec is stale and re-run, and so is one
measured under other p2p semantics than the run asks for (``$PMCTL_P2P_SEMANTICS``, which is
not part of the spec: the stages' runtime facts record it). Failed and interrupted cells are
recorded too (with the reason) and re-run by the next ``pmctl run``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.cellspec import CellSpec
from engine.config import P2P_SEMANTICS_ENV
from engine.jsonio import fsync_path, write_json_atomic
from figures.cells import cell_folder

Cell = CellSpec
CELL_JSON = "cell.json"
DONE, FAILED, INTERRUPTED = "done", "failed", "interrupted"
STALE, MISSING = "stale", "missing"
STOPPED = "stopped"  # done, but stopped where it had to (pmctl.expected_stop): a finished cell
_STAGING = ".partial-"
_ASIDE = ".old-"
_UNRECORDED = ".unrecorded-"  # the logs of a cell that could not be recorded: never swept
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


def requested_semantics() -> str:
    """The p2p semantics a ``pmctl run`` gives its stages: ``$PMCTL_P2P_SEMANTICS``, else the
    engine's default, native."""
    return os.environ.get(P2P_SEMANTICS_ENV, "").strip() or "native"


def recorded_semantics(record: dict[str, Any]) -> str:
    """The p2p semantics a cell's stages ran with, from their runtime facts in its
    ``cell.json`` (native where none says: the engine's default before it reported them)."""
    hosts = record.get("hosts")
    found = {
        str(h["runtime"].get("p2p_semantics") or "native")
        for h in (hosts.values() if isinstance(hosts, dict) else [])
        if isinstance(h, dict) and isinstance(h.get("runtime"), dict) and h["runtime"]
    }
    return ",".join(sorted(found)) or "native"


def read_status(path: Path, cell: Cell) -> tuple[str, str]:
    """The one status rule: (status, reason) of ``cell`` from its folder's ``cell.json``;
    ("missing", ...) without one, ("stale", ...) when it holds a run of another spec, or a
    finished run under other p2p semantics than ``requested_semantics``."""
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
    if record.get("status") == DONE and recorded_semantics(record) != requested_semantics():
        return STALE, (f"measured with {recorded_semantics(record)} p2p semantics, not the "
                       f"{requested_semantics()} asked for ({P2P_SEMANTICS_ENV}): rerun it with pmctl run")
    if record.get("status") == DONE and record.get("stopped"):
        return STOPPED, f"stopped at {record['stopped']}"
    return str(record.get("status", MISSING)), str(record.get("reason") or "")


def cell_status(results_root: Path, cell: Cell) -> str:
    """``done`` / ``failed`` / ``interrupted`` for a result of exactly this cell's spec,
    ``stale`` when the folder holds another spec's result, ``missing`` when the cell was
    never run (``read_status`` without the reason; a stopped cell is done)."""
    status = read_status(cell_folder(results_root, cell), cell)[0]
    return DONE if status == STOPPED else status


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
    stopped: str = ""  # an expected stop at a crash: "iteration K: error" (pmctl.expected_stop)
    # hosts whose logs did not come back: why, and the run dir left there for a later look
    collect_failed: dict[str, str] = field(default_factory=dict)
    kept_run_dirs: dict[str, str] = field(default_factory=dict)

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
        _fsync_tree(self.path)
        kept = read_cell_json(self.final)
        if _finished(kept) and record.status != DONE:
            dest = _unique(self.final / ATTEMPTS / record.run_id)
            _move(self.path, dest)
            return dest
        aside = None
        if self.final.exists():
            # rename(2) cannot replace a non-empty folder: move the old one aside first.
            aside = self.final.parent / f".{self.final.name}{_ASIDE}{uuid.uuid4().hex[:8]}"
            _move(self.final, aside)
        _move(self.path, self.final)
        if aside is not None:
            try:
                _settle_aside(aside, self.final)
            except OSError:
                pass  # the new cell is in place; the old one stays aside for the next sweep
        return self.final

    def keep(self, record: CellRecord) -> Path:
        """For a cell that could not be committed: keeps its logs in
        ``<cell>/attempts/<run_id>`` (with ``record`` as its ``cell.json`` where the disk
        allows) and returns where; where not even that folder can be made, they stay beside
        the cell as ``.<cell>.unrecorded-<run_id>``, which no sweep removes."""
        if not self.path.exists():
            return self.final  # the commit moved them into the cell before it failed
        try:
            dest = _unique(self.final / ATTEMPTS / record.run_id)
            _move(self.path, dest)
        except OSError:
            dest = self.final.parent / f".{self.final.name}{_UNRECORDED}{record.run_id}"
            os.replace(self.path, dest)
        try:
            write_json_atomic(dest / CELL_JSON, record.to_json())
        except OSError:
            pass  # the reason is in the run's output; the logs are what must not be lost
        return dest

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _finished(record: dict[str, Any] | None) -> bool:
    return record is not None and record.get("status") == DONE


def _fsync_tree(folder: Path) -> None:
    """Every file and folder under ``folder`` on disk (before a rename makes them visible)."""
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            fsync_path(Path(dirpath) / name)
        fsync_path(dirpath)


def _move(src: Path, dest: Path) -> None:
    """Renames ``src`` to ``dest`` (making ``dest``'s parents), durably: both folders whose
    names changed are fsynced. Only the rename can fail the move: once it is done, what is on
    disk is what a caller must report (a commit whose cell is in place has committed), and a
    folder that cannot be fsynced then costs durability across a power cut only."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest)
    with suppress(OSError):
        fsync_path(dest.parent)
        if src.parent != dest.parent:
            fsync_path(src.parent)


def _unique(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``... where it is taken (history is never overwritten)."""
    n = 1
    out = path
    while out.exists():
        n += 1
        out = path.with_name(f"{path.name}-{n}")
    return out


def _settle_aside(aside: Path, final: Path) -> None:
    """An old cell moved aside during a commit. Back into place if the new one never arrived;
    else its ``previous/`` and ``attempts/`` move into the new cell, then a finished one goes
    into the new cell's ``previous/``, an unreadable one (it may have been finished) into its
    ``attempts/<time>-corrupt``, a failed or interrupted one away."""
    if not final.exists():
        _move(aside, final)
        return
    for sub in (PREVIOUS, ATTEMPTS):
        old = aside / sub
        for child in sorted(old.iterdir()) if old.is_dir() else []:
            _move(child, _unique(final / sub / child.name))
        if old.is_dir():
            old.rmdir()
    record = read_cell_json(aside)
    if _finished(record):
        _move(aside, _unique(final / PREVIOUS / str(record.get("run_id") or aside.name)))
    elif record is None and any(aside.iterdir()):
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        _move(aside, _unique(final / ATTEMPTS / f"{stamp}-corrupt"))
    else:
        shutil.rmtree(aside, ignore_errors=True)


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
