"""``pmctl run`` and ``pmctl list``: thin over matrix (which cells), launcher (one cell) and
the results store."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer

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
from pmctl.console import make_console, make_table


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
    tensorboard: Annotated[Optional[Path], typer.Option("--tensorboard", metavar="DIR", help="Write each finished cell's loss, iteration time, bubble rate and re-plans as TensorBoard scalars under DIR (needs the tensorboard package).")] = None,
    accept_new_host_keys: AcceptKeysOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per line on stdout: each finished cell (spec, status, folder, seconds, reason, mean_ms), then a summary; progress goes to stderr.")] = False,
    engine_entry: Annotated[Optional[str], typer.Option("--engine-entry", hidden=True, envvar="PMCTL_ENGINE_ENTRY", help="Launcher target instead of '-m engine.train' (tests).")] = None,
) -> None:
    """Run figures or experiment files: simulated figures compute here; measured cells run
    on the cluster into `results/<fig>/<method>/<links>/<delay>/` (another spec than the
    paper's default: `results/<variant>/<fig>/...`; an experiment: `results/<name>/...`).
    Finished cells are skipped; `--quick` runs fewer delays."""
    from pmctl.experiment import RunRequest, cluster_stages, execute
    from pmctl.inventory import load_inventory

    if tensorboard is not None:
        from pmctl.metrics import require_tensorboard
        require_tensorboard(tensorboard)  # before any cell runs
    req = RunRequest(
        targets, selection(methods, links, delays), quick, results_folder(results),
        spec_options(preset, stages, microbatches, iters, fault_at, delegates),
        force, dry_run, timeout, tuple(engine_entry.split()) if engine_entry else None, extras,
        tensorboard=tensorboard,
    )
    stages = cluster_stages(load_inventory(inventory), req)
    with (_json_lines_out() if as_json else nullcontext()) as report, \
            open_session(inventory, accept_new_host_keys, stages) as session:
        code = execute(session, req, make_console(stderr=as_json), report)
    if code:
        sys.exit(code)


@contextmanager
def _json_lines_out() -> Iterator[Callable[[dict], None]]:
    """For ``--json``: a writer of one JSON object per line to stdout, flushed at once (a reader
    follows the run as it goes), while anything else written to stdout, by a solver or a child
    process too, goes to stderr instead, so stdout holds only the JSON lines."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    try:
        yield lambda obj: (out.write(json.dumps(obj, default=str) + "\n"), out.flush())
    finally:
        sys.stdout.flush()
        os.dup2(out.fileno(), 1)
        out.close()


@app.command(name="list")
def list_figures(
    quick: QuickOpt = False,
    cells: Annotated[bool, typer.Option("--cells", help="List every cell.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print {figures:[{figure, kind, cells, estimate_s, title}]} (with `--cells`: each figure's cell_list).")] = False,
) -> None:
    """The figures, their cells and an estimated run time on the embedded default."""
    from figures.cells import base_spec, cell_label
    from figures.registry import figure_names, get_figure

    console = make_console()
    table = make_table("figure", "kind", "cells", "estimate", "title")
    listed = []
    data = []
    base = base_spec()
    for name in figure_names():
        fig = get_figure(name)
        fig_cells = fig.cells(base, quick)
        listed.append((name, fig_cells))
        est = fig.estimate_seconds(base, quick)
        table.add_row(name, fig.kind, str(len(fig_cells)), _duration(est), fig.title)
        entry = {"figure": name, "kind": fig.kind, "cells": len(fig_cells), "estimate_s": round(est, 1), "title": fig.title}
        if cells:
            entry["cell_list"] = [{"cell": cell_label(c), "spec": c.to_json()} for c in fig_cells]
        data.append(entry)
    if as_json:
        typer.echo(json.dumps({"quick": quick, "figures": data}, indent=2))
        return
    console.print(table)
    if cells:
        ct = make_table("figure", "folder", "iterations", "fault at", "preset")
        for name, fig_cells in listed:
            for c in fig_cells:
                ct.add_row(name, cell_label(c), str(c.iterations), str(c.fault_at), c.preset)
        console.print(ct)


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
