"""The end of every cell, however it went (``pmctl.cellrun``'s teardown): stop what the cell
started on every host (its recorded process groups TERM then KILL, Redis included, then a
sweep for anything else carrying the cell's token), collect the logs into the staging folder,
remove the run dirs. Each step runs on every host even if another step failed there; the
failures come back as notes for cell.json instead of being raised.

A run dir whose logs did not come back is kept (it holds the only copy), with every host
sharing it (the hosts of a local cluster share one): the cell records why and where, and its
ledger entry keeps the dir for ``pmctl stop --purge``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmctl import runs
from pmctl.collect import collect_host
from pmctl.fanout import describe, fanout
from pmctl.inventory import Host
from pmctl.launchers import StageProcess
from pmctl.session import Session
from pmctl.transport.base import ProcessHandle, token_sweep_script

CALL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Footprint:
    """What one cell started and where: enough to stop, collect and remove it everywhere."""

    run_id: str
    token: str  # in the environment of everything the cell started: the sweep's key
    run_dirs: Mapping[str, str]  # host name -> the cell's run dir there (absolute once prepared)
    procs: list[StageProcess]  # the stage processes the launcher asked for
    started: Mapping[str, ProcessHandle]  # process label -> its group, for the starts that returned
    redis: ProcessHandle | None  # the cell's Redis, once it exists


@dataclass
class Teardown:
    """What a cell's teardown left behind."""

    notes: list[str] = field(default_factory=list)  # "<step> on <host>: <reason>", for cell.json
    collect_failed: dict[str, str] = field(default_factory=dict)  # host -> why its logs did not come
    kept_run_dirs: dict[str, str] = field(default_factory=dict)  # host -> its run dir, kept


def teardown(session: Session, hosts: list[Host], fp: Footprint, grace_s: float, dest: Path,
             entry: runs.RunEntry | None = None) -> Teardown:
    """Stop, collect into ``dest``, remove, on every one of ``hosts`` (a run dir whose logs did
    not come back is kept); ``entry``, the cell's ledger entry, is updated to what is left:
    its groups unless all stopped, the run dirs whose removal failed, and the kept ones."""
    notes: list[str] = []
    stop_all(session, hosts, fp, grace_s, notes)
    stopped = not notes
    collected = _fan(hosts, lambda h: _collect_host(session, fp, h, dest))
    failed = {o.host: describe(o.error) for o in collected if not o.ok}
    by_name = {h.name: h for h in hosts}
    keep = {_where(by_name[n], fp.run_dirs[n]) for n in failed}
    kept = {h.name: fp.run_dirs[h.name] for h in hosts if _where(h, fp.run_dirs[h.name]) in keep}
    removed = _fan([h for h in hosts if h.name not in kept], lambda h: _remove_remote(session, fp, h))
    notes += _failures(collected, "collect") + _failures(removed, "cleanup")
    if entry is not None:
        if stopped:
            entry.processes = []  # every group stopped and the token swept: none left to find
        entry.remote_dirs = {o.host: fp.run_dirs[o.host] for o in removed if not o.ok}
        entry.kept_dirs = kept
        runs.save(entry)
    return Teardown(notes, failed, kept)


def _where(host: Host, run_dir: str) -> tuple[str, int, str]:
    """A run dir's identity: hosts at one address share one file system."""
    return host.address, host.port, run_dir


def stop_all(session: Session, hosts: list[Host], fp: Footprint, grace_s: float, notes: list[str]) -> None:
    """Stops every recorded group, then sweeps for the cell's token; failures go to ``notes``."""
    ours = list(fp.started.values()) + ([fp.redis] if fp.redis is not None else [])

    def stop(host: Host) -> None:
        t = session.transport(host)
        for handle in ours:
            if handle.host == host.name:
                t.stop(handle, grace_s)

    def sweep(host: Host) -> None:
        session.transport(host).run(token_sweep_script(fp.token, grace_s), grace_s + CALL_TIMEOUT_S)

    notes += _failures(_fan(hosts, stop, grace_s * (1 + len(fp.procs)) + CALL_TIMEOUT_S), "stop")
    # Only after every recorded group is stopped (a group is recognised by a member with
    # our token, which the sweep would take away): anything else of this cell, i.e.
    # unrecorded starts and workers that left our process groups.
    notes += _failures(_fan(hosts, sweep, grace_s + CALL_TIMEOUT_S), "stop")


def _collect_host(session: Session, fp: Footprint, host: Host, dest: Path) -> None:
    started = [(p.label, fp.started[p.label]) for p in fp.procs
               if p.host.name == host.name and p.label in fp.started]
    collect_host(session.transport(host), fp.run_dirs[host.name], started, dest)


def _remove_remote(session: Session, fp: Footprint, host: Host) -> None:
    session.transport(host).run(runs.cleanup_cmd(fp.run_dirs[host.name], fp.run_id), CALL_TIMEOUT_S)


def _fan(hosts: list[Host], fn: Callable[[Host], Any], timeout: float = CALL_TIMEOUT_S) -> list:
    return fanout(hosts, fn, timeout, name=lambda h: h.name)


def _failures(outcomes: list, step: str) -> list[str]:
    return [f"{step} on {o.host}: {describe(o.error)}" for o in outcomes if not o.ok]
