"""``pmctl plot``, ``pmctl reference`` and ``pmctl trace``: figures, the artifact's numbers,
Perfetto traces. Thin: parse, call ``figures``, print; figure errors become user errors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pmctl.app import app
from pmctl.commands.cluster import InventoryOpt
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
from pmctl.errors import UserError

DEFAULT_RESULTS = Path("results")


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def _print_report(report: Any) -> None:
    from rich import box

    console = make_console()
    # Columns with no value in any row (e.g. the artifact's, without --reference) are left out.
    keep = [i for i in range(len(report.columns)) if any(str(row[i]) != "n/a" for row in report.rows)]
    table = make_table(*(report.columns[i] for i in keep), title=report.figure,
                       title_justify="left", box=box.SIMPLE_HEAD)
    for row in report.rows:
        table.add_row(*(str(row[i]) for i in keep))
    console.print(table)
    for line in report.missing:
        console.print(f"[yellow]missing[/yellow] {line}", highlight=False)
    for line in report.notes:
        console.print(f"note: {line}", highlight=False)
    for path in report.files:
        if path.suffix == ".png":
            console.print(f"figure: {path}", highlight=False)


@app.command()
def plot(
    targets: Annotated[
        list[str], typer.Argument(help="Figures to draw (see `pmctl list`), 'all', or experiment files PATH.toml.")
    ],
    inventory: InventoryOpt = None,
    results: ResultsOpt = DEFAULT_RESULTS,
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
    reference: Annotated[
        Optional[Path],
        typer.Option("--reference", help="Artifact results tree to overlay (ratios to its ZB no-fault)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {figure, cells:[...]} (a list of them for several figures).")
    ] = False,
) -> None:
    """Draw figures (or experiment files) from the results store: PNG/PDF + `<fig>.json`, and
    a table of the numbers. The spec flags pick the same cells `pmctl run` ran with them.

    Measured figures draw missing or failed cells as n/a and list them; simulated figures
    need `pmctl run FIG` first. With 'all', figures without data are skipped (and said so).
    """
    from figures.reference import ArtifactTreeError
    from figures.registry import UnknownFigureError, figure_names, plot_figure
    from figures.simulated import MissingDataError
    from pmctl.experiment_file import is_experiment_file, load_experiment, plot_experiment
    from pmctl.inventory import load_inventory
    from pmctl.matrix import base_for, cluster_inventory

    opts = spec_options(preset, stages, microbatches, iters, fault_at, delegates)
    sel = selection(methods, links, delays)
    results = results_folder(results)
    inv = cluster_inventory(load_inventory(inventory), opts)
    everything = [t.lower() for t in targets] == ["all"]
    reports = []
    base = None
    for name in figure_names() if everything else targets:
        try:
            if is_experiment_file(name):
                if quick or reference is not None:
                    raise UserError("--quick and --reference apply to the paper's figures", name,
                                    "drop them for an experiment file")
                reports.append(plot_experiment(load_experiment(Path(name), inv, opts, sel), results))
                continue
            base = base or base_for(inv, opts)
            reports.append(plot_figure(name, results, base, quick, sel.axes(base.stages), reference))
        except MissingDataError as exc:
            if not everything:
                raise UserError(str(exc)) from exc
            typer.echo(f"skipped {name}: {exc}", err=True)
        except (UnknownFigureError, ArtifactTreeError) as exc:
            raise UserError(str(exc)) from exc
    if as_json:
        out = [{"figure": r.figure, "cells": r.cells} for r in reports]
        _print_json(out[0] if len(out) == 1 else out)
        return
    for r in reports:
        _print_report(r)


@app.command("reference")
def reference_cmd(
    directory: Annotated[
        Path, typer.Argument(help="Artifact results tree (`figXX/<METHOD>/<links>/<delay>/`).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print {cells:[...]}.")] = False,
) -> None:
    """Print the artifact's iteration time of every cell, computed the artifact's way."""
    from figures.reference import ArtifactTreeError, read_reference

    try:
        cells = read_reference(directory)
    except ArtifactTreeError as exc:
        raise UserError(str(exc)) from exc
    if as_json:
        _print_json({"cells": [c.to_json() for c in cells]})
        return
    table = make_table("figure", "method", "links", "delay (ms)", "time (s)", "std (s)", "iterations",
                       "source", title=f"artifact cells in {directory}", title_justify="left")
    for c in cells:
        delay = "inf" if math.isinf(c.delay_s) else f"{c.delay_s * 1000:g}"
        table.add_row(c.figure, c.method, c.links, delay, f"{c.iteration_time_s:.3f}",
                      f"{c.std_s:.3f}", str(c.iterations), c.source)
    make_console().print(table)


@app.command()
def trace(
    cell_dir: Annotated[Path, typer.Argument(help="A cell folder with stage*.jsonl op logs.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Trace file (default CELL_DIR/trace.json).")
    ] = None,
) -> None:
    """Write a Chrome/Perfetto trace of one cell (open it in ui.perfetto.dev)."""
    from figures.perfetto import write_trace

    if not cell_dir.is_dir():
        raise UserError(
            "no such cell folder", where=str(cell_dir), hint="pass results/<fig>/<method>/<links>/<delay>"
        )
    try:
        path = write_trace(cell_dir, output)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    typer.echo(f"trace: {path} (open in https://ui.perfetto.dev)")
