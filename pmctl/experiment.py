"""``pmctl run`` as a function: compute simulated figures, then run each measured cell with
live progress, skip finished cells, print a summary table, and return the exit code
(0 all good, 1 a cell failed, 130 interrupted). A host that stops answering ends the run
after the cell it broke: the cells left are ``not_run``, and after the summary one
``UserError`` line names the host (exit 2). With a ``report`` callback (``--json``) each
finished cell, then a summary, is also handed over as one JSON-ready dict."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from figures.cells import Cell, cell_label
from figures.registry import simulated_root
from figures.store import is_done, sweep_staging
from pmctl import runs
from pmctl.app import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from pmctl.errors import UserError
from pmctl.fanout import fanout, raise_first
from pmctl.inventory import Host, Inventory, load_inventory
from pmctl.launcher import CellInterrupted, CellOutcome, LaunchOptions, run_cell
from pmctl.launchers import check_cell, check_p2p_semantics
from pmctl.locks import results_lock
from pmctl.matrix import (
    PlannedCell,
    Selection,
    SpecOptions,
    base_for,
    figure_cells,
    resolve_figures,
)
from pmctl.memory_check import check_gpu_memory
from pmctl.runreport import NOT_RUN, Report, outcome_json, print_plan, print_summary
from pmctl.session import Session
from pmctl.transport.base import HostUnreachable


@dataclass(frozen=True)
class RunRequest:
    """What ``pmctl run`` was asked: figure names (or ``all``) and experiment files."""

    targets: list[str]
    selection: Selection
    quick: bool
    results: Path
    options: SpecOptions = SpecOptions()
    force: bool = False
    dry_run: bool = False
    timeout_s: float = 900.0
    engine_entry: tuple[str, ...] | None = None  # None = the bundled engine
    extras: bool = False  # the simulated figures' expensive extra lines
    tensorboard: Path | None = None  # write each finished cell's scalars under this log dir


# Exit 3 from the probe: that interpreter has no torch (the engine extra is not installed).
_TORCH_PROBE = "import importlib.util as u, sys; sys.exit(0 if u.find_spec('torch') else 3)"


def preflight(session: Session) -> None:
    """Checks the prerequisites once, before any cell, failing with one line that names the
    host: every host answers and its python has torch; the master has redis-server."""
    inv = session.inventory

    def check(host: Host) -> None:
        t = session.transport(host)
        r = t.run(f"{shlex.quote(host.python)} -c {shlex.quote(_TORCH_PROBE)}", 60)
        if r.rc == 3:
            raise UserError(f"no torch for {host.python}", f"host {host.name}",
                            "install the engine there: pip install '.[engine]' (or run pmctl setup)")
        if not r.ok:
            raise UserError(f"cannot run {host.python}: {(r.stderr.strip() or r.stdout.strip())[-200:]}",
                            f"host {host.name}", "fix python in the inventory, or run pmctl setup")
        if host is inv.master and not t.run("command -v redis-server && command -v redis-cli", 30).ok:
            raise UserError("redis-server/redis-cli not found (the control plane)", f"master host {host.name}",
                            "bin/setup as root installs it, or pmctl setup --install-redis, "
                            "or apt-get install redis-server")

    raise_first(fanout(list(inv.hosts), check, inv.cluster.connect_timeout + 90, name=lambda h: h.name),
                "checking the hosts")


def _check_idle(session: Session) -> None:
    """Refuses to start while another pmctl run is live; cleans up after a dead one, on the
    hosts of that run's own inventory."""
    entry = runs.load()
    if entry is None:
        return
    if runs.owner_alive(entry):
        raise UserError(
            f"another pmctl run (pid {entry.pmctl_pid}) is running cell {entry.run_id}",
            "pmctl run", "wait for it or run pmctl stop",
        )
    from pmctl.stopper import stop_recorded

    if entry.inventory == str(session.inventory.path) or not Path(entry.inventory).is_file():
        stop_recorded(session)
        return
    with Session(load_inventory(Path(entry.inventory))) as own:
        stop_recorded(own)


def cluster_stages(inv: Inventory, req: RunRequest) -> int | None:
    """The stage count the cluster must run for this request: ``--stages``, else the
    experiment files' (which must agree), else None (the inventory's)."""
    from pmctl.experiment_file import is_experiment_file, load_experiment

    if req.options.stages is not None:
        return req.options.stages
    counts = {t: load_experiment(Path(t), inv, req.options, req.selection).stages
              for t in req.targets if is_experiment_file(t)}
    if len(set(counts.values())) > 1:
        raise UserError(
            "the experiment files want different stage counts: "
            + ", ".join(f"{t} {n}" for t, n in counts.items()), "pmctl run",
            "run them one at a time, or pass --stages")
    stages = next(iter(counts.values()), None)
    figures = [t for t in req.targets if not is_experiment_file(t)]
    if figures and stages not in (None, inv.stages):
        # the figures would silently run at the file's stage count, into another folder
        raise UserError(
            f"the experiment files run {stages} stages, the inventory {inv.stages}: the figures "
            f"{', '.join(figures)} would change with them", "pmctl run",
            "run the figures and the files separately, or pass --stages")
    return stages


def plan(session: Session, req: RunRequest) -> tuple[list, list[PlannedCell]]:
    """The simulated figures to compute and the measured cells to run (checked against the
    session's cluster), before anything runs."""
    from pmctl.experiment_file import is_experiment_file, load_experiment

    inv = session.inventory
    check_p2p_semantics()  # forwarded to every stage: a bad value would fail every cell
    files = [t for t in req.targets if is_experiment_file(t)]
    names = [t for t in req.targets if t not in files]
    figures = resolve_figures(names) if names else []
    cells = []
    if figures:  # an experiment file's spec need not suit the inventory's defaults
        cells = figure_cells(figures, req.results, base_for(inv, req.options), req.quick, req.selection)
    for path in files:
        cells += load_experiment(Path(path), inv, req.options, req.selection).planned(req.results)
    for p in cells:
        check_cell(inv, p.cell)  # before anything runs: every cell fits this cluster
    check_gpu_memory(session, [p.cell for p in cells])  # and its GPUs' memory (setup's facts)
    simulated = [f for f in figures if f.kind == "simulated"]
    if not cells and not simulated:
        raise UserError("no cells to run", "pmctl run", "see pmctl list --cells, or check the flags")
    return simulated, cells


def execute(session: Session, req: RunRequest, console: Console, report: Report | None = None) -> int:
    """Runs the request; returns the exit code. ``report`` gets each finished cell's and
    simulated figure's object, then the summary (the dry run: each planned cell's)."""
    simulated, cells = plan(session, req)
    if req.dry_run:
        print_plan(console, simulated, cells, simulated_root(req.results, req.quick), req.force, report)
        return 0
    root = simulated_root(req.results, req.quick)
    for fig in simulated:
        with console.status(f"computing {fig.name} (simulated)"):
            fig.compute(root / fig.name, req.quick, None, extras=req.extras)
        console.print(f"{fig.name}: computed into {root / fig.name}")
        if report:
            report({"type": "figure", "figure": fig.name, "kind": "simulated", "status": "computed", "folder": str(root / fig.name)})
    if not cells:
        print_summary(console, [], report)
        return 0
    with runs.run_lock(), results_lock(req.results):  # one run per state and per results folder
        return _run_cells(session, req, cells, console, report)


def _run_cells(session: Session, req: RunRequest, cells: list[PlannedCell], console: Console,
               report: Report | None = None) -> int:
    """The measured part of a run: every cell in turn, then the summary; the exit code."""
    _check_idle(session)
    for root in dict.fromkeys(p.root for p in cells):
        sweep_staging(root)
    preflight(session)
    opts = LaunchOptions(
        results_root=req.results, timeout_s=req.timeout_s,
        **({"engine_entry": req.engine_entry} if req.engine_entry else {}),
    )
    outcomes: list[CellOutcome] = []
    last_ms: dict[str, float] = {}
    session.install_signal_handlers()
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        ) as progress:
            all_task = progress.add_task("cells", total=len(cells))
            for planned in cells:
                cell = planned.cell
                if not req.force and is_done(planned.root, cell):
                    outcomes.append(CellOutcome(cell, "skipped", planned.folder, reason="done"))
                    _write_metrics(req, planned, console)  # every done cell of the figure, cheap
                    if report:
                        report(outcome_json(outcomes[-1]))
                    progress.advance(all_task)
                    continue
                if session.unreachable():  # a host vanished: no cell can run without it
                    outcomes.append(CellOutcome(cell, NOT_RUN, planned.folder, reason="a host is unreachable"))
                    if report:
                        report(outcome_json(outcomes[-1]))
                    progress.advance(all_task)
                    continue
                label = cell_label(cell)
                it_task = progress.add_task(label, total=cell.iterations)

                def show(hb: dict[int, dict[str, Any]], cell: Cell = cell, task: Any = it_task) -> None:
                    if not hb:
                        return
                    done = min(int(h.get("iteration", -1)) + 1 for h in hb.values())
                    ms = [float(h["last_iteration_ms"]) for h in hb.values() if h.get("last_iteration_ms")]
                    if ms:
                        last_ms[cell.method] = max(ms)
                    per_method = " ".join(f"{m}={v:.0f}ms" for m, v in last_ms.items())
                    progress.update(task, completed=done, description=f"{cell_label(cell)} {per_method}")

                try:
                    outcome = run_cell(session, cell, replace(opts, results_root=planned.root), show)
                except CellInterrupted as exc:
                    outcomes.append(exc.args[0])
                    if report:
                        report(outcome_json(outcomes[-1]))
                    raise
                finally:
                    progress.remove_task(it_task)
                outcomes.append(outcome)
                if report:
                    report(outcome_json(outcome))
                progress.advance(all_task)
                if outcome.status == "done":
                    _write_metrics(req, planned, console)
                style = "green" if outcome.status == "done" else "red"
                console.print(f"[{style}]{outcome.status}[/{style}] {label} ({outcome.seconds:.1f} s) {outcome.reason}", highlight=False)
    except KeyboardInterrupt:
        print_summary(console, outcomes, report, EXIT_INTERRUPTED)
        console.print("[red]interrupted[/red]: stopped everything started; the cell is recorded as interrupted")
        return EXIT_INTERRUPTED
    finally:
        session.restore_signal_handlers()
    if session.unreachable():
        print_summary(console, outcomes, report, EXIT_USAGE)
        raise _run_stopped(session.unreachable(), sum(o.status == NOT_RUN for o in outcomes))
    code = EXIT_FAILED if any(o.status not in ("done", "skipped") for o in outcomes) else 0
    print_summary(console, outcomes, report, code)
    return code


def _run_stopped(lost: list[HostUnreachable], not_run: int) -> UserError:
    """The one line that ends a run whose hosts stopped answering: which, and what is left."""
    rest = f", {not_run} cell{'s' if not_run != 1 else ''} not run" if not_run else ""
    if len(lost) == 1:
        what, where = lost[0].what, lost[0].where
    else:
        what, where = "unreachable", ", ".join(e.where or "" for e in lost)
    them = "it" if len(lost) == 1 else "them"
    return UserError(f"{what}; the run stopped{rest}", where,
                     f"bring {them} back, then pmctl stop cleans up there and a rerun skips the finished cells")


def _write_metrics(req: RunRequest, planned: PlannedCell, console: Console) -> None:
    """The cell's TensorBoard run (``--tensorboard``). A failure costs only the metrics: it is
    said on the console and the run goes on with the next cell."""
    if req.tensorboard is None:
        return
    from pmctl.metrics import write_cell_scalars

    try:
        write_cell_scalars(req.tensorboard, req.results, planned.cell, planned.folder)
    except UserError as exc:
        console.print(f"[yellow]no TensorBoard run[/yellow] for {cell_label(planned.cell)}: {exc.line()}",
                      highlight=False)
