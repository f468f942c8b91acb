"""``pmctl stop``: stop everything the run ledger says pmctl started, on every host — only
our process groups (recorded pgid + token), the control plane, and the run's remote files.
Idempotent: with nothing recorded it does nothing."""

from __future__ import annotations

import os
import signal
import time

from pmctl import runs
from pmctl.fanout import fanout
from pmctl.session import Session
from pmctl.transport.base import token_sweep_script


def stop_recorded(session: Session, grace: float = 5.0) -> list[str]:
    """Stops the recorded run; returns one line per thing stopped (empty when idle)."""
    entry = runs.load()
    if entry is None:
        return []
    done: list[str] = []
    if entry.pmctl_pid != os.getpid() and runs.owner_alive(entry):
        # The running pmctl cleans up and records the cell as interrupted itself.
        os.kill(entry.pmctl_pid, signal.SIGTERM)
        deadline = time.monotonic() + grace + 60
        while runs.owner_alive(entry) and time.monotonic() < deadline:
            time.sleep(0.2)
        done.append(f"signalled pmctl run (pid {entry.pmctl_pid})")
        entry = runs.load()  # it has cleared the ledger, or recorded more meanwhile
        if entry is None:
            return done
    hosts = {h.name: h for h in session.inventory.hosts}
    tokens = sorted({p.token for p in entry.processes})

    def stop_host(name: str) -> list[str]:
        t = session.transport(hosts[name])
        out = []
        for p in entry.processes:
            if p.host == name and t.alive(p):
                t.stop(p, grace)
                out.append(f"stopped {p.name} on {name} (pgid {p.pgid})")
        d = entry.remote_dirs.get(name)
        if d:
            t.run(runs.cleanup_cmd(d, entry.run_id), 60)
        return out

    names = sorted({p.host for p in entry.processes} | set(entry.remote_dirs))
    unknown = [n for n in names if n not in hosts]
    failed = False
    reachable = [n for n in names if n in hosts]
    for o in fanout(reachable, stop_host, grace + 180):
        if o.ok:
            done += o.value
        else:
            failed = True
            done.append(f"could not reach {o.host}: {o.error}")

    def sweep(name: str) -> None:  # after the group stops: whatever else of that run
        for token in tokens:
            session.transport(hosts[name]).run(token_sweep_script(token, grace), grace + 60)

    for o in fanout(reachable, sweep, grace + 120):
        failed = failed or not o.ok
    if unknown:
        done.append(f"not in this inventory: {', '.join(unknown)} (run pmctl stop --inventory {entry.inventory})")
    if not failed and not unknown:
        runs.clear(entry)  # else kept, so the next pmctl stop retries
    return done
