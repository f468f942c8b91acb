"""A cell's control plane: ``redis-server`` on the master for the duration of one cell,
password-protected (the password travels in a 0600 file and the environment, never argv),
bound to the master's cluster address, no persistence."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pmctl.errors import UserError
from pmctl.inventory import Host
from pmctl.transport.base import ProcessHandle, Transport

CALL_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 15.0


@dataclass
class ControlPlane:
    """A started Redis: its process, its URL, and a client when this machine reaches it."""

    handle: ProcessHandle
    url: str
    client: Any = None  # injector.control.ControlClient, or None: no live progress

    def heartbeats(self) -> dict[int, dict[str, Any]]:
        """Each stage's latest heartbeat ({} when unknown: progress display only)."""
        from injector.control import ControlPlaneError

        if self.client is None:
            return {}
        try:
            return self.client.heartbeats()
        except ControlPlaneError:
            return {}

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def start_redis(
    t: Transport, master: Host, run_dir: str, port: int, password: str, token: str, run_id: str,
    record: Callable[[ProcessHandle, str], None],
) -> ControlPlane:
    """Starts Redis in ``<run_dir>/redis`` on the master and waits until it answers there.
    ``record(handle, url)`` runs as soon as the process exists (so a teardown stops it)."""
    from injector.control import ControlClient, ControlPlaneError
    from injector.redis_server import render_config

    d = f"{run_dir}/redis"
    if not t.run("command -v redis-server && command -v redis-cli", CALL_TIMEOUT_S).ok:
        raise UserError(
            f"redis-server/redis-cli not found on master host {master.name}: install them "
            "(pmctl setup --install-redis, or apt install redis-server)"
        )
    t.write_text(f"{d}/redis.conf", render_config([master.address], port, password, d))
    handle = t.start("redis", "redis-server redis/redis.conf", {}, run_dir, token)
    url = f"redis://{master.address}:{port}"
    record(handle, url)
    # Ready = it answers on the master itself (the password goes through the environment,
    # never argv); this machine may not reach the cluster network at all.
    ping = (
        f'REDISCLI_AUTH="$(cat {shlex.quote(run_dir)}/password)" '
        f"redis-cli --no-auth-warning -h {shlex.quote(master.address)} -p {port} ping"
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while t.run(ping, CALL_TIMEOUT_S).stdout.strip() != "PONG":
        if time.monotonic() > deadline or t.poll(handle) is not None:
            tail = t.run(f"tail -n 3 {shlex.quote(d)}/redis.log", CALL_TIMEOUT_S).stdout.strip()
            raise UserError(f"redis-server on {master.name}:{port} did not come up: {tail}")
        time.sleep(0.1)
    plane = ControlPlane(handle, url)
    client = ControlClient(url, run_id, password)
    try:
        client.ping()
        plane.client = client  # live progress from the heartbeats
    except ControlPlaneError:
        client.close()  # unreachable from here: the run goes on without live progress
    return plane


def free_ports(t: Transport, python: str, host: str, count: int = 2) -> list[int]:
    """``count`` free TCP ports on the host (the master's rendezvous and Redis)."""
    code = (
        f"import socket\nss=[socket.socket() for _ in range({count})]\n"
        "[s.bind(('',0)) for s in ss]\nprint(*[s.getsockname()[1] for s in ss])"
    )
    r = t.run(f"{shlex.quote(python)} -c {shlex.quote(code)}", CALL_TIMEOUT_S)
    if not r.ok:
        raise UserError(f"cannot run python on master {host}: {r.stderr.strip()}")
    return [int(x) for x in r.stdout.split()]
