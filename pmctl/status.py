"""``pmctl status``: the hosts, the cell running now (live iteration per stage), and per
figure how many cells are done, failed or missing. Returns plain data; the CLI renders it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from engine.cellspec import CellSpec
from figures.store import summarize_cells
from pmctl import runs
from pmctl.fanout import describe, fanout
from pmctl.inventory import Host
from pmctl.session import Session

PROBE_TIMEOUT_S = 15.0


def host_rows(session: Session) -> list[dict[str, Any]]:
    """Per host: reachable, versions and device from its fact sheet, bundle in sync, Redis."""
    inv = session.inventory
    digest = ""
    if inv.cluster.deploy == "wheel":
        from pmctl.deploy import bundle_hash

        digest = bundle_hash()

    def probe(host: Host) -> dict[str, Any]:
        r = session.transport(host).run(
            f"cat {shlex.quote(host.work_dir)}/bundle/hash 2>/dev/null; echo; "
            f"test -x {shlex.quote(host.python)} && echo python-ok; "
            "command -v redis-server >/dev/null && command -v redis-cli >/dev/null && echo redis-ok; true",
            PROBE_TIMEOUT_S,
        )
        words = r.stdout.split()
        return {"remote_hash": words[0] if words and len(words[0]) == 16 else "", "python_ok": "python-ok" in words, "redis_installed": "redis-ok" in words}

    rows = []
    outcomes = fanout(list(inv.hosts), probe, PROBE_TIMEOUT_S + inv.cluster.connect_timeout, name=lambda h: h.name)
    for host, o in zip(inv.hosts, outcomes):
        facts = session.facts(host)
        row: dict[str, Any] = {
            "name": host.name, "address": host.address, "stage": host.stage,
            "stages": list(host.stage_range),
            "reachable": o.ok, "error": "" if o.ok else describe(o.error),
            "python": facts.get("python"), "torch": facts.get("torch"),
            "device": inv.cluster.device, "cuda_count": facts.get("cuda_count"),
            "set_up": bool(facts),
        }
        if o.ok:
            v = o.value
            row["python_ok"] = v["python_ok"]
            row["bundle"] = "n/a" if not digest else ("in sync" if v["remote_hash"] == digest else "stale")
            if host is inv.master:
                row["redis"] = "installed" if v["redis_installed"] else "missing"
        rows.append(row)
    return rows


def running() -> dict[str, Any] | None:
    """The cell in flight per the run ledger, with each stage's latest heartbeat."""
    entry = runs.load()
    if entry is None:
        return None
    out: dict[str, Any] = {
        "run_id": entry.run_id, "cell": entry.cell, "started": entry.started,
        "pmctl_pid": entry.pmctl_pid, "pmctl_alive": runs.owner_alive(entry),
        "processes": [f"{p.host}:{p.name}:{p.pgid}" for p in entry.processes],
        "stages": {}, "redis": "unknown",
    }
    if entry.control_url and entry.secret_file:
        from injector.control import ControlClient, ControlPlaneError
        from pmctl.controlplane import local_tls_dir

        try:
            password = Path(entry.secret_file).read_text().strip()
            tls_dir = local_tls_dir(entry.run_id)  # used by a rediss:// (off-host) URL only
            with ControlClient(entry.control_url, entry.run_id, password, tls_dir) as client:
                out["stages"] = {str(k): v for k, v in client.heartbeats().items()}
                out["redis"] = "up"
        except (OSError, ControlPlaneError) as exc:
            out["redis"] = f"unreachable ({describe(exc)})"
    return out


def figure_rows(results: Path, base: CellSpec) -> list[dict[str, Any]]:
    """Per measured figure: done / failed / interrupted / stale / missing cells of spec
    ``base`` (stale = a stored result of another spec)."""
    from figures.cells import figure_root
    from figures.registry import figure_names, get_figure

    root = figure_root(results, base)
    rows = []
    for name in figure_names():
        fig = get_figure(name)
        if fig.kind != "measured":
            continue
        cells = fig.cells(base)
        rows.append({"figure": name, "cells": len(cells), **summarize_cells(root, cells)})
    return rows


def collect(session: Session, results: Path, base: CellSpec) -> dict[str, Any]:
    """Everything ``status --json`` prints; the figures' cells are those of spec ``base``."""
    return {
        "inventory": str(session.inventory.path),
        "cluster": session.inventory.cluster.name,
        "spec": {k: v for k, v in base.to_json().items() if k not in ("figure", "method", "links", "delay_s", "trace")},
        "hosts": host_rows(session),
        "running": running(),
        "figures": figure_rows(results, base),
    }

