"""A cell's record: ``cell.json`` (spec and its hash, status, exit codes, host facts with each
host's stages, versions, iteration times, the hosts whose logs did not come back) and its
timeline picture. ``record_cell`` writes it into the results store; whatever goes wrong
doing so, the collected logs are kept and the cell is failed with one reason, so the run
goes on with the next cell.

Per host, ``facts`` is the fact sheet of the last ``pmctl setup`` ({} without one) and
``runtime`` what the host's first stage reported for this very run (``stage<s>.facts.json``,
written by the engine before training: python, torch, cuda, hostname, boot_id, platform,
device, backend; gpu on CUDA), so every cell records the versions it ran with."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.oplog import facts_path
from figures.store import DONE, FAILED, CellRecord, Staging
from pmctl import runs
from pmctl.cellstop import Teardown
from pmctl.collect import missing_op_logs
from pmctl.expected_stop import mark_expected_stop
from pmctl.fanout import describe
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
    if record.status == FAILED:
        mark_expected_stop(record, folder)  # a crash the method cannot survive is its end
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


def add_teardown(record: CellRecord, torn: Teardown) -> None:
    """Records what the teardown left: its failures in the reason, and the hosts whose logs
    did not come back (the cell is then not done) with the run dirs kept for them."""
    record.collect_failed = dict(torn.collect_failed)
    record.kept_run_dirs = dict(torn.kept_run_dirs)
    if torn.collect_failed and record.status == DONE:
        record.status = FAILED
    notes = list(torn.notes)
    dirs: dict[str, list[str]] = {}
    for host, d in sorted(torn.kept_run_dirs.items()):
        dirs.setdefault(d, []).append(host)
    notes += [f"kept the run dir {d} on {', '.join(hosts)} (its logs did not come back; "
              "copy what you need, then pmctl stop --purge removes it)" for d, hosts in dirs.items()]
    record.reason = "; ".join(filter(None, [record.reason, *notes]))


@dataclass(frozen=True)
class Recorded:
    """Where a cell's record went and what to say about it."""

    record: CellRecord
    folder: Path  # the cell, its attempts/<run_id>, or where its logs were kept
    reason: str  # the record's reason, plus where the attempt went when not into the cell


def record_cell(
    session: Session, cell: Any, run_id: str, staging: Staging, status: str, reason: str,
    codes: dict[str, int | None], started: str, torn: Teardown,
) -> Recorded:
    """Records the cell from its staging folder into the results store. When that fails (a
    full disk, a fact sheet that cannot be read ...), the cell is failed with one reason, its
    collected logs are kept (``Staging.keep``) and the traceback goes to pmctl's log."""
    try:
        record = make_record(session, cell, run_id, status, reason, codes, started)
        add_results(session, record, staging.path)
        add_teardown(record, torn)
        folder = staging.commit(record)
    except Exception as exc:  # noqa: BLE001 - one cell's record must not cost its logs or the run
        runs.log_traceback(exc, f"recording the cell of run {run_id} failed")
        record = CellRecord(
            spec=cell.to_json(), spec_hash=cell.spec_hash, status=FAILED, run_id=run_id,
            started=started, ended=now(), reason=f"recording failed: {describe(exc)}", exit_codes=codes,
        )
        add_teardown(record, torn)
        folder = staging.keep(record)
        return Recorded(record, folder, f"{record.reason}; the collected logs are kept in {folder}")
    if folder != staging.final:
        return Recorded(record, folder, f"{record.reason} (the finished result stays; this attempt is in {folder})")
    return Recorded(record, folder, record.reason)


def render_timeline(folder: Path) -> None:
    """Draws the cell's ``timeline.png``; best effort, a cell is complete without it."""
    try:
        # Imported here: matplotlib must not slow down pmctl's start (``pmctl --help``).
        from figures.timeline import render_cell_timeline

        render_cell_timeline(folder)
    except Exception as exc:  # noqa: BLE001 - any drawing problem only costs the picture
        log.warning("no timeline for %s: %s", folder, exc)
