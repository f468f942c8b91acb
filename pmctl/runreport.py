"""What ``pmctl run`` shows and reports besides the progress: the dry run's plan, each
finished cell as a JSON object (``--json``), and the summary (table and JSON)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from figures.cells import cell_label
from figures.store import DONE, cell_status
from pmctl.console import make_table
from pmctl.launcher import CellOutcome
from pmctl.matrix import PlannedCell

Report = Callable[[dict[str, Any]], None]  # receives one JSON-ready object per event (--json)
NOT_RUN = "not_run"  # a cell's status when an unreachable host stopped the run before it
STATUSES = ("done", "skipped", "failed", "interrupted", NOT_RUN)  # the summary counts each


def outcome_json(o: CellOutcome) -> dict[str, Any]:
    """One finished cell as ``--json`` prints it (strict JSON: no NaN or infinity)."""
    ms = o.mean_ms if o.mean_ms is not None and math.isfinite(o.mean_ms) else None
    return {"type": "cell", "cell": cell_label(o.cell), "spec": o.cell.to_json(), "status": o.status,
            "folder": str(o.folder), "seconds": round(o.seconds, 3), "reason": o.reason, "mean_ms": ms,
            "exit_codes": o.exit_codes}


def print_plan(console: Console, simulated: list, cells: list[PlannedCell], root: Path, force: bool,
               report: Report | None = None) -> None:
    """``--dry-run``: the simulated figures (computed into ``root``) and each cell's folder,
    spec, status and action (``force``: done cells run again), then a summary."""
    for fig in simulated:
        console.print(f"{fig.name}: simulated, computed locally into {root / fig.name}")
        if report:
            report({"type": "figure", "figure": fig.name, "kind": "simulated", "status": "planned", "folder": str(root / fig.name)})
    table = make_table("folder", "stages", "preset", "micro-batches", "iterations", "fault at", "now",
                       "action", title="pmctl run --dry-run")
    actions = []
    for p in cells:
        c = p.cell
        now = cell_status(p.root, c)
        action = "skip" if now == DONE and not force else "run"
        actions.append(action)
        table.add_row(str(p.folder), str(c.stages), c.preset, str(c.microbatches),
                      str(c.iterations), str(c.fault_at), now, action)
        if report:
            report({"type": "plan", "cell": cell_label(c), "spec": c.to_json(), "folder": str(p.folder),
                    "status": now, "action": action})
    console.print(table)
    if report:
        report({"type": "summary", "dry_run": True, "cells": len(cells), "run": actions.count("run"),
                "skip": actions.count("skip"), "exit_code": 0})


def print_summary(console: Console, outcomes: list[CellOutcome], report: Report | None = None, code: int = 0) -> None:
    """The summary table of the cells that ran, were skipped or not run, and its JSON
    object with the counts per status and the run's exit ``code``."""
    if report:
        counts = {s: sum(o.status == s for o in outcomes) for s in STATUSES}
        report({"type": "summary", "cells": len(outcomes), **counts,
                "seconds": round(sum(o.seconds for o in outcomes), 3), "exit_code": code})
    if not outcomes:
        return
    table = make_table("cell", "status", "iteration (ms)", "wall (s)", "reason", title="summary")
    for o in outcomes:
        ms = f"{o.mean_ms:.1f}" if o.mean_ms is not None and math.isfinite(o.mean_ms) else "-"
        style = {"done": "green", "skipped": "dim"}.get(o.status, "red")
        table.add_row(cell_label(o.cell), f"[{style}]{o.status.replace('_', ' ')}[/{style}]", ms, f"{o.seconds:.1f}", o.reason)
    console.print(table)
