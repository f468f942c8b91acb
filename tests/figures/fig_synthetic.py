"""Synthetic results for the figure tests: op logs with known iteration times, and cell.json.

Each iteration is a simple pipelined F/B/W pattern (with sends/receives between stages) whose
last op ends exactly at the requested iteration time, so every expected number is known.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.oplog import OpLogWriter
from figures.cells import Cell, cell_folder
from figures.store import CELL_JSON

FORWARD_MS = 30.0


def write_oplogs(
    path: Path, times_ms: list[float], stages: int = 4, mbs: int = 3, delay_ms: float = 0.0
) -> None:
    """Writes ``stage<s>.jsonl`` with one iteration per entry of ``times_ms`` (each > 400 ms)."""
    writers = [OpLogWriter(path / f"stage{s}.jsonl", s) for s in range(stages)]
    for it, total in enumerate(times_ms):
        for w in writers:
            w.iteration(it, schedule=[], fault={}, costs={})
        for mb in range(mbs):
            for s in range(stages):
                start = (s + mb) * FORWARD_MS
                writers[s].op(it, "F", mb, start, start + FORWARD_MS, "inline")
                if s + 1 < stages:
                    end = start + FORWARD_MS
                    writers[s].op(it, "SEND_F", mb, end, end + 1, "inline", peer=s + 1, delay_ms=delay_ms)
                    writers[s + 1].op(it, "RECV_F", mb, end, end + 1 + delay_ms, "inline", peer=s)
        base = (stages + mbs) * FORWARD_MS
        for s in range(stages):
            for mb in range(mbs):
                b0 = base + (stages - 1 - s + mb) * 40.0
                writers[s].op(it, "B", mb, b0, b0 + 40.0, "inline")
        for s in range(stages):
            # The W flush of stage 0 ends the iteration exactly at ``total``.
            end = total if s == 0 else total - 5.0 * s
            writers[s].op(it, "W", 0, end - 20.0, end, "inline")
    for w in writers:
        w.close()


def write_cell(
    results_root: Path,
    cell: Cell,
    times_ms: list[float] | None = None,
    status: str = "done",
    with_timeline: bool = False,
) -> Path:
    """A cell folder as the orchestration leaves it: op logs (unless ``times_ms`` is None),
    cell.json, and (``with_timeline``) a stand-in timeline.png so plotting skips drawing it."""
    path = cell_folder(results_root, cell)
    path.mkdir(parents=True, exist_ok=True)
    if times_ms is not None:
        write_oplogs(path, times_ms, delay_ms=cell.delay_s * 1000)
    if with_timeline:
        (path / "timeline.png").write_bytes(b"")
    (path / CELL_JSON).write_text(json.dumps({"status": status, "spec": cell.to_json(), "spec_hash": cell.spec_hash}), encoding="utf-8")
    return path


# Known per-cell iteration times (ms) for fig15's quick cells: healthy 1400, the non-adapting
# methods pay 12 x the delay, the offloading ones 1 x.
ITERATIONS = 10


def cell_times_ms(method: str, delay_s: float) -> list[float]:
    """The synthetic iteration times of a cell of ``method`` under ``delay_s``."""
    base = 1400.0 + delay_s * 1000 * (12 if method in ("zb", "1f1b") else 1)
    return [base + 10.0 * k for k in range(ITERATIONS)]


def write_fig15_quick(root: Path, with_timeline: bool = True) -> Path:
    """fig15's quick cells, all done except PipeMorph at 120 ms (failed)."""
    from figures.cells import base_spec
    from figures.registry import get_figure

    for cell in get_figure("fig15").cells(base_spec(), quick=True):
        if cell.method == "pipemorph" and cell.delay_s == 0.12:
            write_cell(root, cell, None, status="failed")
        else:
            times = cell_times_ms(cell.method, cell.delay_s)
            write_cell(root, cell, times, with_timeline=with_timeline)
    return root
