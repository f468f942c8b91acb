"""Runs one cell on the cluster: ``run_cell`` (the public entry) over the modules that do the
work, one job each:

- ``pmctl.launchers``: the launcher table (fork | torchrun | direct): which processes start
  on which host, their command lines and environment (torchrun's static rendezvous,
  ``engine.rendezvous``), how a failing one is named;
- ``pmctl.cellrun``: one cell in flight (prepare, start, follow, stop, collect, record);
- ``pmctl.controlplane``: the cell's Redis on the master;
- ``pmctl.collect``: pulling the op logs and process streams back;
- ``pmctl.cellrecord``: ``cell.json`` and the timeline picture.
"""

from __future__ import annotations

import math
from typing import Any

from injector.trace import Fault, Trace
from pmctl.cellrun import CellInterrupted, CellOutcome, CellRun, LaunchOptions, Progress
from pmctl.launchers import check_cell
from pmctl.results import Staging
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


def trace_text(cell: Any) -> str:
    """A cell's fault as artifact-compatible trace text (``ITER;LINKS;DELAY``): its trace
    file's text for a trace cell, else its slow links from ``fault_at``; empty when healthy."""
    text = getattr(cell, "trace_text", "")
    if text or cell.healthy:
        return text
    fault = Fault(links=cell.links, delay_s=cell.delay_s, crashed=math.isinf(cell.delay_s),
                  since_iteration=cell.fault_at)
    return Trace((fault,)).to_text()


__all__ = ["CellInterrupted", "CellOutcome", "LaunchOptions", "Progress", "run_cell", "trace_text"]
