"""``pmctl run`` and ``pmctl list``: thin over matrix (which cells), launcher (one cell) and
the results store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from pmctl.app import app
from pmctl.commands.cluster import AcceptKeysOpt, InventoryOpt, open_session
from pmctl.errors import UserError


def _csv(values: list[str]) -> list[str]:
    return [v for item in values for v in item.split(",") if v.strip()]


@app.command()
def run(
    figures: Annotated[list[str], typer.Argument(help="Figure names (pmctl list) or 'all'.")],
    inventory: InventoryOpt = None,
    methods: Annotated[list[str], typer.Option("--methods", help="Only these methods (comma-separated or repeated).")] = [],
    links: Annotated[list[str], typer.Option("--links", help="Only these slow links, e.g. 2_3 or '0_1,2_3' (repeatable).")] = [],
    delays: Annotated[list[str], typer.Option("--delays", help="Only these delays: 60 (ms), 60ms, 0.06s, inf (comma-separated).")] = [],
    iters: Annotated[Optional[int], typer.Option("--iters", min=1, help="Iterations per cell.")] = None,
    fault_at: Annotated[Optional[int], typer.Option("--fault-at", min=0, help="0-based iteration the fault starts.")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="Model preset (engine presets).")] = None,
    delegates: Annotated[Optional[int], typer.Option("--delegates", min=0, help="Delegate workers per direction (0 = automatic).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="The figures' quick cell sets.")] = False,
    results: Annotated[Path, typer.Option("--results", help="Results folder.")] = Path("results"),
    force: Annotated[bool, typer.Option("--force", help="Rerun cells that are already done.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the cells; run nothing.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds per cell before it is failed.")] = 900.0,
    accept_new_host_keys: AcceptKeysOpt = False,
    engine_entry: Annotated[Optional[str], typer.Option("--engine-entry", hidden=True, envvar="PMCTL_ENGINE_ENTRY", help="Launcher target instead of '-m engine.train' (tests).")] = None,
) -> None:
    """Run figures: simulated ones compute here; measured ones run each cell on the cluster
    into `results/<fig>/<method>/<links>/<delay>/` (finished cells are skipped; `--quick`
    runs go to `results/quick/`)."""
    from figures.cells import run_root
    from pmctl.experiment import RunRequest, execute
    from pmctl.matrix import Selection, parse_delay, parse_links

    if preset is not None:
        from engine.presets import PRESETS

        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r}", "--preset", f"use one of {', '.join(PRESETS)}")
    sel = Selection(
        methods=tuple(_csv(methods)),
        links=tuple(parse_links(v) for v in links),
        delays_s=tuple(parse_delay(d) for d in _csv(delays)),
        iterations=iters, fault_at=fault_at, preset=preset, delegates=delegates,
    )
    entry = tuple(engine_entry.split()) if engine_entry else None
    req = RunRequest(figures, sel, quick, run_root(results, quick), force, dry_run, timeout, entry)
    with open_session(inventory, accept_new_host_keys) as session:
        code = execute(session, req, Console())
    if code:
        sys.exit(code)


@app.command(name="list")
def list_figures(
    quick: Annotated[bool, typer.Option("--quick", help="Show the quick cell sets.")] = False,
    cells: Annotated[bool, typer.Option("--cells", help="List every cell.")] = False,
) -> None:
    """The figures, their cells and an estimated run time on the embedded default."""
    from figures.registry import figure_names, get_figure

    console = Console()
    table = Table("figure", "kind", "cells", "estimate", "title")
    listed = []
    for name in figure_names():
        fig = get_figure(name)
        fig_cells = fig.cells(quick)
        listed.append((name, fig_cells))
        est = fig.estimate_seconds(quick)
        table.add_row(name, fig.kind, str(len(fig_cells)), _duration(est), fig.title)
    console.print(table)
    if cells:
        ct = Table("figure", "folder", "iterations", "fault at", "preset")
        for name, fig_cells in listed:
            for c in fig_cells:
                ct.add_row(name, f"{c.figure}/{c.rel_dir}", str(c.iterations), str(c.fault_at), c.preset)
        console.print(ct)


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
