"""``pmctl setup``, ``pmctl status`` and ``pmctl stop``: thin over deploy, status, stopper."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from pmctl.app import app

# The spec flags are defined once, in spec_flags (which imports nothing from here).
from pmctl.commands.spec_flags import (  # noqa: E402
    DelegatesOpt,
    FaultAtOpt,
    ItersOpt,
    MicrobatchesOpt,
    PresetOpt,
    StagesOpt,
)
from pmctl.console import make_console, make_table
from pmctl.errors import UserError

InventoryOpt = Annotated[
    Optional[Path],
    typer.Option("--inventory", "-i", envvar="PMCTL_INVENTORY", help="Inventory file (default ./inventory.toml)."),
]
AcceptKeysOpt = Annotated[
    bool, typer.Option("--accept-new-host-keys", help="Add unknown SSH host keys to known_hosts instead of refusing.")
]


def open_session(inventory: Optional[Path], accept_new_host_keys: bool = False,
                 stages: Optional[int] = None):  # noqa: ANN201
    """Loads and validates the inventory (with ``--stages`` applied), then a Session over it."""
    from pmctl.inventory import load_inventory
    from pmctl.session import Session

    inv = load_inventory(inventory)
    return Session(inv.with_stages(stages) if stages is not None else inv, accept_new_host_keys)


@app.command()
def setup(
    inventory: InventoryOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Reinstall even on hosts already in sync.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; touch no host.")] = False,
    install_redis: Annotated[bool, typer.Option("--install-redis", help="apt-install redis-server on the master if missing.")] = False,
    accept_new_host_keys: AcceptKeysOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print {hosts:[{host, action, ok, problem, seconds, facts}]} (with `--dry-run`: {plan:[...]}); progress goes to stderr.")] = False,
) -> None:
    """Deploy the project to every host (wheel + venv, torch reused), check torch, device,
    backend and redis-server, and record a fact sheet per host."""
    from pmctl.deploy import plan_lines, setup_hosts

    console = make_console(stderr=as_json)
    with open_session(inventory, accept_new_host_keys) as session:
        if dry_run:
            lines = plan_lines(session.inventory, force, install_redis)
            if as_json:
                typer.echo(json.dumps({"dry_run": True, "plan": lines}, indent=2))
                return
            for line in lines:
                console.print(line, highlight=False)
            return
        with console.status("setting up hosts..."):
            results = setup_hosts(
                session, force, install_redis,
                on_host=lambda r: console.print(f"{r.host}: {r.action}{' - ' + r.problem if r.problem else ''}", highlight=False),
            )
    bad = [r for r in results if not r.ok]
    if as_json:
        hosts = [{"host": r.host, "action": r.action, "ok": r.ok, "problem": r.problem,
                  "seconds": round(r.seconds, 3), "facts": r.facts} for r in results]
        typer.echo(json.dumps({"ok": not bad, "hosts": hosts}, indent=2, default=str))
    else:
        table = make_table("host", "action", "python", "torch", "device", "problem")
        for r in results:
            f = r.facts
            dev = f"cuda x{f.get('cuda_count')}" if f.get("cuda_count") else ("cpu" if f else "")
            table.add_row(r.host, r.action, str(f.get("python", "")), str(f.get("torch", "")), dev, r.problem)
        console.print(table)
    if bad:
        raise UserError(f"setup failed on {len(bad)} host(s); first: {bad[0].problem}", f"host {bad[0].host}")


@app.command()
def status(
    inventory: InventoryOpt = None,
    results: Annotated[Path, typer.Option("--results", help="Results folder.")] = Path("results"),
    preset: PresetOpt = None,
    stages: StagesOpt = None,
    microbatches: MicrobatchesOpt = None,
    iters: ItersOpt = None,
    fault_at: FaultAtOpt = None,
    delegates: DelegatesOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with a 'hosts' list).")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh until Ctrl-C; with `--json` one JSON object per line.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.2, help="Seconds between refreshes with `--watch`.")
    ] = 2.0,
    accept_new_host_keys: AcceptKeysOpt = False,
) -> None:
    """Hosts, the running cell (live iteration per stage) and results per figure (of the
    spec the flags and the inventory give, as `pmctl run` would run it)."""
    from pmctl.commands.spec_flags import results_folder, spec_options
    from pmctl.matrix import base_for
    from pmctl.status import collect

    console = make_console()
    opts = spec_options(preset, stages, microbatches, iters, fault_at, delegates)
    results = results_folder(results)
    with open_session(inventory, accept_new_host_keys, stages) as session:
        base = base_for(session.inventory, opts)
        try:
            while True:
                data = collect(session, results, base)
                if as_json:
                    # Watching: one object per line, so a reader can parse each refresh.
                    typer.echo(json.dumps(data, indent=None if watch else 2, default=str))
                else:
                    if watch:
                        console.clear()
                    _render_status(console, data)
                if not watch:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            if not watch:
                raise
            # Ctrl-C is how a watch ends: not an interruption of anything.


def _render_status(console: Console, data: dict) -> None:
    hosts = make_table("host", "stages", "address", "reachable", "python", "torch", "device", "bundle", "redis", title=f"cluster {data['cluster']}")
    for h in data["hosts"]:
        reach = "yes" if h["reachable"] else f"[red]no[/red] {h['error']}"
        dev = h["device"] + (f" x{h['cuda_count']}" if h.get("cuda_count") else "")
        hosts.add_row(h["name"], ",".join(map(str, h.get("stages") or [h["stage"]])), h["address"], reach, str(h.get("python") or "-"),
                      str(h.get("torch") or "-"), dev, str(h.get("bundle", "-")), str(h.get("redis", "")))
    console.print(hosts)
    run = data["running"]
    if run is None:
        console.print("no cell running")
    else:
        c = run["cell"]
        owner = "running" if run["pmctl_alive"] else "[red]pmctl gone: run `pmctl stop`[/red]"
        console.print(f"cell {c['figure']}/{c['method']}/{c['links']}/{c['delay_s']} ({run['run_id']}, {owner}), redis {run['redis']}")
        t = make_table("stage", "iteration", "phase", "last iteration (ms)")
        for s, hb in run["stages"].items():
            t.add_row(s, f"{hb.get('iteration')}/{c['iterations']}", str(hb.get("phase")), f"{hb.get('last_iteration_ms') or 0:.1f}")
        console.print(t)
    figs = make_table("figure", "cells", "done", "failed", "interrupted", "stale", "missing")
    for f in data["figures"]:
        figs.add_row(f["figure"], str(f["cells"]), str(f["done"]), str(f["failed"]), str(f["interrupted"]), str(f["stale"]), str(f["missing"]))
    console.print(figs)


@app.command()
def stop(
    inventory: InventoryOpt = None,
    accept_new_host_keys: AcceptKeysOpt = False,
    purge: Annotated[bool, typer.Option("--purge", help="Also remove the run dirs kept because their logs did not come back.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print {running, run_id, stopped:[one line per thing stopped]}.")] = False,
) -> None:
    """Stop everything pmctl started on every host (only our process groups), for every cell in
    the run ledger. Idempotent."""
    from pmctl import runs
    from pmctl.stopper import stop_recorded

    entries = runs.load_all()
    lines: list[str] = []
    if entries:
        # The newest cell's own inventory knows where its processes are, unless told otherwise
        # (each other entry is stopped through its own inventory where that file still exists).
        recorded = Path(entries[-1].inventory)
        chosen = inventory or (recorded if recorded.is_file() else None)
        with open_session(chosen, accept_new_host_keys) as session:
            lines = stop_recorded(session, purge=purge, own_inventories=inventory is None)
    if as_json:
        run_id = entries[-1].run_id if entries else None
        running = any(runs.active(e) for e in entries)
        typer.echo(json.dumps({"running": running, "run_id": run_id, "stopped": lines}, indent=2))
    else:
        typer.echo("\n".join(lines) if lines else "nothing running")
