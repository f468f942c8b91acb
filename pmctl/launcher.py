"""Runs one cell on the cluster: ``run_cell`` (the public entry) over the modules that do the
work, one job each:

- ``pmctl.launchers``: the launcher table (fork | torchrun | direct): which processes start
  on which host, their command lines and environment (torchrun's static rendezvous,
  ``engine.rendezvous``), how a failing one is named;
- ``pmctl.cellrun``: one cell in flight (prepare, start, follow, stop, collect, record);
- ``pmctl.cellstop``: its teardown (stop and sweep, collect, remove the run dirs);
- ``pmctl.controlplane``: the cell's Redis on the master;
- ``pmctl.collect``: pulling the op logs and process streams back;
- ``pmctl.cellrecord``: ``cell.json`` and the timeline picture.
"""

from __future__ import annotations

from typing import Any

from figures.store import Staging
from pmctl.cellrun import CellInterrupted, CellOutcome, CellRun, LaunchOptions, Progress
from pmctl.launchers import check_cell
from pmctl.session import Session


def run_cell(session: Session, cell: Any, opts: LaunchOptions, progress: Progress | None = None) -> CellOutcome:
    """Runs one cell into the results store; raises ``CellInterrupted`` (after cleanup and
    recording) when the user interrupts it, and ``UserError`` (before touching a host) for a
    cell whose stages, stages per host, device or launcher are not what the inventory runs."""
    check_cell(session.inventory, cell)
    staging = Staging(opts.results_root, cell)
    try:
        return CellRun(session, cell, opts).execute(staging, progress)
    finally:
        staging.discard()  # no-op after a commit (the folder was renamed away)


__all__ = ["CellInterrupted", "CellOutcome", "LaunchOptions", "Progress", "run_cell"]
