"""A cell's record: ``cell.json`` (spec and its hash, status, exit codes, host facts with each
host's stages, versions, iteration times) and its timeline picture.

Per host, ``facts`` is the fact sheet of the last ``pmctl setup`` ({} without one) and
``runtime`` what the host's first stage reported for this very run (``stage<s>.facts.json``,
written by the engine before training: python, torch, cuda, hostname, boot_id, platform,
device, backend; gpu on CUDA), so every cell records the versions it ran with."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from engine.oplog import facts_path
from figures.store import DONE, FAILED, CellRecord
from pmctl.collect import missing_op_logs
from pmctl.session import Session

log = logging.getLogger(__name__)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def host_facts(session: Session) -> dict[str, dict[str, Any]]:
    """Per host: the stages it ran, its address, and its fact sheet from ``pmctl setup``."""
    return {
        h.name: {"stages": list(h.stage_range), "address": h.address, "facts": session.facts(h)}
        for h in session.inventory.hosts
    }


def make_record(
    session: Session, cell: Any, run_id: str, status: str, reason: str,
    exit_codes: dict[str, int | None], started: str,
) -> CellRecord:
    inv = session.inventory
    return CellRecord(
        spec=cell.to_json(), spec_hash=cell.spec_hash, status=status, run_id=run_id,
        started=started, ended=now(), reason=reason, exit_codes=exit_codes,
        hosts=host_facts(session), versions=session.versions(), inventory=str(inv.path),
    )


def stage_facts(folder: Path, stage: int) -> dict[str, Any]:
    """The engine's ``stage<s>.facts.json`` in ``folder`` ({} when absent or unreadable)."""
    try:
        facts = json.loads(facts_path(folder, stage).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return facts if isinstance(facts, dict) else {}


def add_runtime_facts(session: Session, record: CellRecord, folder: Path) -> None:
    """Sets each host's ``runtime``: the facts its first reporting stage wrote."""
    for h in session.inventory.hosts:
        found = (stage_facts(folder, s) for s in h.stage_range)
        facts = next((f for f in found if f), {})
        runtime = {k: v for k, v in facts.items() if k not in ("stage", "world")}
        record.hosts.setdefault(h.name, {})["runtime"] = runtime


def add_results(session: Session, record: CellRecord, folder: Path) -> None:
    """Records what the stages reported about themselves; then, for a cell whose stages all
    finished: fails it when a stage's op log is missing, else fills in the iteration times
    from the op logs."""
    from engine.oplog import iteration_times_ms, read_records, summarize

    add_runtime_facts(session, record, folder)
    if record.status != DONE:
        return
    missing = missing_op_logs(session.inventory, folder)
    if missing:
        record.status, record.reason = FAILED, missing
        return
    times = iteration_times_ms(read_records(folder))
    record.iteration_ms = {str(k): round(v, 3) for k, v in sorted(times.items())}
    if times:
        record.mean_ms = round(summarize(times).mean_ms, 3)


def render_timeline(folder: Path) -> None:
    """Draws the cell's ``timeline.png``; best effort, a cell is complete without it."""
    try:
        # Imported here: matplotlib must not slow down pmctl's start (``pmctl --help``).
        from figures.timeline import render_cell_timeline

        render_cell_timeline(folder)
    except Exception as exc:  # noqa: BLE001 - any drawing problem only costs the picture
        log.warning("no timeline for %s: %s", folder, exc)
