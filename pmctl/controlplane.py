"""A cell's control plane: ``redis-server`` on the master for the duration of one cell.

- Access: the per-run password (in a 0600 file and the environment, never argv) opens only the
  ``pmctl`` ACL user: the control-plane client's commands, on the run's keys only.
- TLS when the master's address is not loopback (the traffic leaves the host): a per-run CA
  (``injector.tls``) whose certificates every host gets in ``<run_dir>/tls`` (0600); Redis
  listens with TLS only and requires the run's client certificate. Loopback stays plain.
- A bounded lifetime: Redis runs under a watchdog that stops it once pmctl has not renewed its
  lease file for ``lease_s`` seconds, so a pmctl killed outright (SIGKILL, a lost terminal)
  does not leave it running until ``pmctl stop``. The watchdog times the lease by its own
  clock (seconds since the file's mtime last changed): on NFS the mtime is the file server's.

Bound to the master's cluster address, no persistence.
"""

from __future__ import annotations

import math
import shlex
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from injector.tls import TLS_DIR_ENV, TlsBundle
from pmctl.errors import UserError
from pmctl.inventory import Host
from pmctl.transport.base import ProcessHandle, Transport, TransportError

CALL_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 15.0
# Redis outlives a pmctl that died without cleaning up by at most this (plus a second or two).
# Long enough that a few missed renewals (a busy host, a slow SSH round trip) never stop a run.
LEASE_S = 60.0
RENEWALS_PER_LEASE = 6
TLS_DIR = "tls"  # in the run dir of every host


@dataclass
class ControlPlane:
    """A started Redis: its process, its URL, a client when this machine reaches it, the
    lease that keeps it alive and this machine's copy of the client's TLS files."""

    handle: ProcessHandle
    url: str
    client: Any = None  # injector.control.ControlClient, or None: no live progress
    lease: Lease | None = None
    local_tls: Path | None = None

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
        """Stops renewing the lease (the teardown stops Redis itself) and forgets the local
        TLS files."""
        if self.lease is not None:
            self.lease.stop()
        if self.client is not None:
            self.client.close()
        if self.local_tls is not None:
            shutil.rmtree(self.local_tls, ignore_errors=True)


class Lease:
    """Renews the master's lease file (its mtime) from a daemon thread until ``stop``: a pmctl
    that dies stops renewing, and the watchdog beside Redis stops it."""

    def __init__(self, t: Transport, path: str, lease_s: float) -> None:
        self._t = t
        self._cmd = f"touch -c {shlex.quote(path)}"  # -c: a removed run dir stays removed
        self._every_s = lease_s / RENEWALS_PER_LEASE
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="pmctl-redis-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=CALL_TIMEOUT_S)

    def _renew(self) -> None:
        failing = False
        while not self._stopped.wait(self._every_s):
            try:
                self._t.run(self._cmd, max(self._every_s, 5.0))
                failing = False
            except TransportError:
                pass  # the next renewal retries; a lease lasts several renewals
            except Exception as exc:  # noqa: BLE001 - a dead renewer would stop Redis mid-cell: log it, go on
                if not failing:  # once per streak, not every few seconds
                    from pmctl import runs

                    runs.log_traceback(exc, "renewing the control plane's lease failed (retrying):")
                failing = True


def watched_command(cmd: str, lease: str, lease_s: float) -> str:
    """Bash that runs ``cmd`` and TERMs it once the ``lease`` file's mtime has not changed
    for ``lease_s`` seconds, or the file is gone; its exit status is ``cmd``'s. Relative
    paths: from the run dir. The seconds are the watchdog's own (bash's ``SECONDS`` since it
    last saw the mtime change), never the mtime against this host's clock: on NFS the mtime
    is the file server's clock, which may be far off.

    ``cmd`` also ends with its watchdog: a TERM to the watchdog is passed on, and where
    ``setpriv --pdeathsig`` exists ``cmd`` gets a TERM when the watchdog dies of anything
    (a KILL). This matters because a token sweep cannot see Redis itself: Redis rewrites its
    process title over its environment, token included, so killing the tokened processes
    alone would otherwise orphan it."""
    bound = max(1, math.ceil(lease_s))
    q = shlex.quote(lease)
    return (
        "pd=; setpriv --pdeathsig TERM true 2>/dev/null && pd='setpriv --pdeathsig TERM'; "
        "trap '[ -n \"$pid\" ] && kill -TERM $pid 2>/dev/null' TERM INT HUP; "
        f"$pd {cmd} & pid=$!; seen=; since=$SECONDS; while kill -0 $pid 2>/dev/null; do "
        f"m=$(stat -c %y {q} 2>/dev/null) || m=gone; "  # %y: the mtime to the nanosecond
        'if [ "$m" != "$seen" ]; then seen=$m; since=$SECONDS; fi; '
        f'if [ "$m" = gone ] || [ $((SECONDS - since)) -gt {bound} ]; then '
        f"echo 'pmctl renewed no lease for {bound} s (pmctl gone?): stopping redis' >&2; "
        f"kill -TERM $pid; break; fi; sleep 1; done; wait $pid"
    )


def run_tls(master: Host, label: str = "pmctl") -> TlsBundle | None:
    """A fresh CA and certificates for the run when its control plane leaves the host (the
    master's address is not loopback), else None: plain TCP on loopback."""
    from injector.tls import is_loopback, make_bundle

    return None if is_loopback(master.address) else make_bundle([master.address], label)


def push_tls(t: Transport, run_dir: str, tls: TlsBundle | None, master: bool) -> None:
    """Writes the run's TLS files (0600) into ``<run_dir>/tls`` on a host: every host gets
    the CA and the client's certificate and key, the master the server's too."""
    if tls is None:
        return
    files = {**tls.files("client"), **(tls.files("server") if master else {})}
    for name, text in files.items():
        t.write_text(f"{run_dir}/{TLS_DIR}/{name}", text)


def control_env(run_dir: str, tls: TlsBundle | None) -> dict[str, str]:
    """What a stage's environment needs beyond the password file: the TLS folder, if any."""
    return {TLS_DIR_ENV: f"{run_dir}/{TLS_DIR}"} if tls is not None else {}


def local_tls_dir(run_id: str) -> Path:
    """This machine's copy of a run's client TLS files (for its live progress and ``pmctl
    status``), beside the run's password file."""
    from pmctl import runs

    return runs.client_tls_dir(run_id)


def start_redis(
    t: Transport, master: Host, run_dir: str, port: int, password: str, token: str, run_id: str,
    record: Callable[[ProcessHandle, str], None], *, tls: TlsBundle | None = None,
    lease_s: float = LEASE_S,
) -> ControlPlane:
    """Starts Redis in ``<run_dir>/redis`` on the master and waits until it answers there.
    ``record(handle, url)`` runs as soon as the process exists (so a teardown stops it). With
    ``tls``, the master already holds the files (``push_tls``). Redis stops by itself
    ``lease_s`` after pmctl last renewed its lease (``ControlPlane.close`` stops renewing)."""
    from injector.redis_server import namespace, render_config
    from injector.tls import TlsFiles, write_files

    d = f"{run_dir}/redis"
    if not t.run("command -v redis-server && command -v redis-cli", CALL_TIMEOUT_S).ok:
        raise UserError(
            f"redis-server/redis-cli not found on master host {master.name}: install them "
            "(pmctl setup --install-redis, or apt install redis-server)"
        )
    tls_dir = f"{run_dir}/{TLS_DIR}"
    server_tls = TlsFiles.in_dir(tls_dir, "server") if tls else None
    t.write_text(f"{d}/redis.conf", render_config(
        [master.address], port, password, d, keys=namespace(run_id), tls=server_tls,
    ))
    t.write_text(f"{d}/lease", "")
    local_tls = write_files(local_tls_dir(run_id), tls.files("client")) if tls else None
    lease = Lease(t, f"{d}/lease", lease_s)
    try:
        handle = t.start("redis", watched_command("redis-server redis/redis.conf", "redis/lease", lease_s),
                         {}, run_dir, token)
        lease.start()
        url = f"{'rediss' if tls else 'redis'}://{master.address}:{port}"
        record(handle, url)
        _wait_ready(t, master, run_dir, port, tls_dir if tls else None, handle)
    except BaseException:
        lease.stop()
        if local_tls is not None:
            shutil.rmtree(local_tls, ignore_errors=True)
        raise
    plane = ControlPlane(handle, url, lease=lease, local_tls=local_tls)
    _connect(plane, run_id, password)
    return plane


def _wait_ready(
    t: Transport, master: Host, run_dir: str, port: int, tls_dir: str | None, handle: ProcessHandle
) -> None:
    """Ready = it answers PING on the master itself, as the run's user (the password goes
    through the environment, never argv); this machine may not reach the cluster network."""
    from injector.redis_server import ACL_USER
    from injector.tls import TlsFiles

    tls = ""
    if tls_dir is not None:
        f = TlsFiles.in_dir(tls_dir, "client")
        tls = f"--tls --cacert {shlex.quote(str(f.ca))} --cert {shlex.quote(str(f.cert))} --key {shlex.quote(str(f.key))} "
    ping = (
        f'REDISCLI_AUTH="$(cat {shlex.quote(run_dir)}/password)" '
        f"redis-cli --no-auth-warning --user {ACL_USER} {tls}-h {shlex.quote(master.address)} -p {port} ping"
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while t.run(ping, CALL_TIMEOUT_S).stdout.strip() != "PONG":
        if time.monotonic() > deadline or t.poll(handle) is not None:
            log = shlex.quote(f"{run_dir}/redis/redis.log")
            tail = t.run(f"tail -n 3 {log}", CALL_TIMEOUT_S).stdout.strip()
            hint = " (an off-host control plane needs a redis-server built with TLS)" if tls else ""
            raise UserError(f"redis-server on {master.name}:{port} did not come up{hint}: {tail}")
        time.sleep(0.1)


def _connect(plane: ControlPlane, run_id: str, password: str) -> None:
    """Gives ``plane`` a client when this machine reaches the master (live progress)."""
    from injector.control import ControlClient, ControlPlaneError

    try:
        client = ControlClient(plane.url, run_id, password, tls_dir=plane.local_tls)
    except ControlPlaneError:
        return
    try:
        client.ping()
        plane.client = client
    except ControlPlaneError:
        client.close()  # unreachable from here: the run goes on without live progress


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
