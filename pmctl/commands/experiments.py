"""``pmctl run`` and ``pmctl list``: thin over matrix (which cells), launcher (one cell) and
the results store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from pmctl.app import app
from pmctl.commands.cluster import AcceptKeysOpt, InventoryOpt, open_session
from pmctl.commands.spec_flags import (
    DelaysOpt,
    DelegatesOpt,
    FaultAtOpt,
    ItersOpt,
    LinksOpt,
    MethodsOpt,
    MicrobatchesOpt,
    PresetOpt,
    QuickOpt,
    ResultsOpt,
    StagesOpt,
    results_folder,
    selection,
    spec_options,
)
from pmctl.console import make_console


@app.command()
def run(
    targets: Annotated[list[str], typer.Argument(help="Figure names (pmctl list), 'all', or experiment files PATH.toml.")],
    inventory: InventoryOpt = None,
    methods: MethodsOpt = [],
    links: LinksOpt = [],
    delays: DelaysOpt = [],
    preset: PresetOpt = None,
    stages: StagesOpt = None,
    microbatches: MicrobatchesOpt = None,
    iters: ItersOpt = None,
    fault_at: FaultAtOpt = None,
    delegates: DelegatesOpt = None,
    quick: QuickOpt = False,
    results: ResultsOpt = Path("results"),
    force: Annotated[bool, typer.Option("--force", help="Rerun cells that are already done.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the cells; run nothing.")] = False,
    extras: Annotated[bool, typer.Option("--extras", help="Also compute the simulated figures' expensive extra lines (fig19's MILP from PipeMorph alone).")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds per cell before it is failed.")] = 900.0,
    accept_new_host_keys: AcceptKeysOpt = False,
    engine_entry: Annotated[Optional[str], typer.Option("--engine-entry", hidden=True, envvar="PMCTL_ENGINE_ENTRY", help="Launcher target instead of '-m engine.train' (tests).")] = None,
) -> None:
    """Run figures or experiment files: simulated figures compute here; measured cells run
    on the cluster into `results/<fig>/<method>/<links>/<delay>/` (another spec than the
    paper's default: `results/<variant>/<fig>/...`; an experiment: `results/<name>/...`).
    Finished cells are skipped; `--quick` runs fewer delays."""
    from pmctl.experiment import RunRequest, cluster_stages, execute
    from pmctl.inventory import load_inventory

    req = RunRequest(
        targets, selection(methods, links, delays), quick, results_folder(results),
        spec_options(preset, stages, microbatches, iters, fault_at, delegates),
        force, dry_run, timeout, tuple(engine_entry.split()) if engine_entry else None, extras,
    )
    stages = cluster_stages(load_inventory(inventory), req)
    with open_session(inventory, accept_new_host_keys, stages) as session:
        code = execute(session, req, make_console())
    if code:
        sys.exit(code)


@app.command(name="list")
def list_figures(
    quick: QuickOpt = False,
    cells: Annotated[bool, typer.Option("--cells", help="List every cell.")] = False,
) -> None:
    """The figures, their cells and an estimated run time on the embedded default."""
    from figures.cells import base_spec, cell_label
    from figures.registry import figure_names, get_figure

    console = make_console()
    table = Table("figure", "kind", "cells", "estimate", "title")
    listed = []
    base = base_spec()
    for name in figure_names():
        fig = get_figure(name)
        fig_cells = fig.cells(base, quick)
        listed.append((name, fig_cells))
        est = fig.estimate_seconds(base, quick)
        table.add_row(name, fig.kind, str(len(fig_cells)), _duration(est), fig.title)
    console.print(table)
    if cells:
        ct = Table("figure", "folder", "iterations", "fault at", "preset")
        for name, fig_cells in listed:
            for c in fig_cells:
                ct.add_row(name, cell_label(c), str(c.iterations), str(c.fault_at), c.preset)
        console.print(ct)


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
