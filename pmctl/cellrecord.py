"""A cell's record: ``cell.json`` (spec and its hash, status, exit codes, host facts with each
host's stages, versions, iteration times) and its timeline picture."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

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


def add_results(session: Session, record: CellRecord, folder: Path) -> None:
    """For a cell whose stages all finished: fails it when a stage's op log is missing, else
    fills in the iteration times from the op logs."""
    from engine.oplog import iteration_times_ms, read_records, summarize

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
