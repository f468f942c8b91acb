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


def stop_recorded(session: Session, grace: float = 5.0) -> list[str]:
    """Stops the recorded run; returns one line per thing stopped (empty when idle)."""
    entry = runs.load()
    if entry is None:
        return []
    done: list[str] = []
    if entry.pmctl_pid != os.getpid() and runs.pmctl_alive(entry.pmctl_pid):
        # The running pmctl cleans up and records the cell as interrupted itself.
        os.kill(entry.pmctl_pid, signal.SIGTERM)
        deadline = time.monotonic() + grace + 60
        while runs.pmctl_alive(entry.pmctl_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        done.append(f"signalled pmctl run (pid {entry.pmctl_pid})")
    hosts = {h.name: h for h in session.inventory.hosts}

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
    names = [n for n in names if n in hosts]
    for o in fanout(names, stop_host, grace + 120):
        if o.ok:
            done += o.value
        else:
            done.append(f"could not reach {o.host}: {o.error}")
    runs.clear(entry)
    return done
