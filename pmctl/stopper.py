"""``pmctl stop``: stop everything the run ledger says pmctl started, on every host, entry by
entry — only our process groups (recorded pgid + token), the control plane, and the cells'
remote run dirs. An entry goes once its processes are confirmed gone and its dirs removed; a
run dir kept because its logs did not come back stays (and is listed) until ``--purge``.
Idempotent: with nothing recorded it does nothing."""

from __future__ import annotations

import os
import signal
import time
from contextlib import ExitStack
from pathlib import Path

from pmctl import runs
from pmctl.errors import UserError
from pmctl.fanout import fanout
from pmctl.inventory import load_inventory
from pmctl.session import Session
from pmctl.transport.base import token_sweep_script


def stop_recorded(session: Session, grace: float = 5.0, purge: bool = False, own_inventories: bool = True) -> list[str]:
    """Stops what every ledger entry recorded; returns one line per thing stopped, removed or
    kept (empty when nothing is recorded). A live pmctl run is signalled first and cleans up
    after itself. With ``own_inventories`` an entry of another inventory file that still
    exists is stopped through that inventory, else through ``session``'s."""
    done = _signal_owners(runs.load_all(), grace)
    with ExitStack() as stack:
        sessions: dict[str, Session] = {}
        for entry in runs.load_all():  # again: a signalled run has cleared its own entries
            inv = entry.inventory
            if own_inventories and inv != str(session.inventory.path) and Path(inv).is_file():
                if inv not in sessions:
                    sessions[inv] = _open(stack, inv, session)
                done += stop_entry(sessions[inv], entry, grace, purge)
            else:
                done += stop_entry(session, entry, grace, purge)
    return done


def _open(stack: ExitStack, inventory: str, fallback: Session) -> Session:
    """A session on ``inventory``, or ``fallback`` when that file no longer loads."""
    try:
        return stack.enter_context(Session(load_inventory(Path(inventory)), fallback.accept_new))
    except UserError:
        return fallback


def _signal_owners(entries: list[runs.RunEntry], grace: float) -> list[str]:
    """SIGTERMs each live pmctl that owns an entry (not this one) and waits for it to end:
    the running pmctl cleans up and records its cell as interrupted itself."""
    done = []
    owners = {e.pmctl_pid: e for e in entries if e.pmctl_pid != os.getpid() and runs.owner_alive(e)}
    for pid, entry in owners.items():
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            continue  # ended meanwhile, or not ours to signal: nothing of it to wait for
        deadline = time.monotonic() + grace + 60
        while runs.owner_alive(entry) and time.monotonic() < deadline:
            time.sleep(0.2)
        done.append(f"signalled pmctl run (pid {pid})")
    return done


def stop_entry(session: Session, entry: runs.RunEntry, grace: float, purge: bool) -> list[str]:
    """Stops one entry's groups, sweeps its tokens, removes its run dirs (the kept ones only
    with ``purge``); clears the entry when nothing of it is left, else keeps what is."""
    hosts = {h.name: h for h in session.inventory.hosts}
    tokens = sorted({p.token for p in entry.processes} | ({entry.token} if entry.token else set()))
    remove = {**entry.remote_dirs, **(entry.kept_dirs if purge else {})}

    def stop_host(name: str) -> tuple[list[str], bool]:
        t = session.transport(hosts[name])
        out, gone = [], True
        for p in entry.processes:
            if p.host == name and t.alive(p):
                t.stop(p, grace)
                gone = gone and not t.alive(p)
                out.append(f"stopped {p.name} on {name} (pgid {p.pgid})")
        for token in tokens:  # after the groups: whatever else of that cell
            t.run(token_sweep_script(token, grace), grace + 60)
        if name in remove:
            t.run(runs.cleanup_cmd(remove[name], entry.run_id), 60)
            if name in entry.kept_dirs:
                out.append(f"removed the kept run dir {remove[name]} on {name}")
        return out, gone

    names = sorted({p.host for p in entry.processes} | set(entry.remote_dirs) | set(entry.kept_dirs))
    unknown = [n for n in names if n not in hosts]
    reachable = [n for n in names if n in hosts]
    done: list[str] = []
    failed = False
    for o in fanout(reachable, stop_host, grace * (1 + len(tokens)) + 180):
        if o.ok:
            lines, gone = o.value
            done += lines
            failed = failed or not gone
        else:
            failed = True
            done.append(f"could not reach {o.host}: {o.error}")
    if unknown:
        done.append(f"not in this inventory: {', '.join(unknown)} (run pmctl stop --inventory {entry.inventory})")
    if failed or unknown:
        return done  # kept, so the next pmctl stop retries
    kept = {} if purge else entry.kept_dirs
    for d in sorted(set(kept.values())):
        on = ", ".join(sorted(h for h, v in kept.items() if v == d))
        done.append(f"kept {d} on {on}: its logs did not come back (copy what you need, then pmctl stop --purge)")
    if kept:
        entry.processes, entry.remote_dirs = [], {}
        runs.save(entry)  # only the kept dirs are left of it
    else:
        runs.clear(entry)
    return done
