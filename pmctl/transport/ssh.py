"""SSH transport through Fabric, with host keys checked and a timeout on every call.

A host that vanishes (powered off, off the network) must end in an error within seconds, not
a hang: paramiko sends keepalives on every connection, and the kernel drops a connection
whose data stays unacknowledged for ``dead_after`` seconds (TCP_USER_TIMEOUT), which ends any
call in flight there. A failed call then checks the host with a fresh TCP connect to its sshd:
no answer makes it ``HostUnreachable``, and the transport fails at once from then on (it tries
again after ``LOST_RETRY_S``, so a long ``status --watch`` sees the host come back).

Fabric accepts unknown host keys by default (``AutoAddPolicy``); here unknown keys are refused
(``RejectPolicy``) unless the user opts in with ``--accept-new-host-keys``, in which case new
keys are added to the inventory's known_hosts file. Secrets never appear on a command line or
in Fabric's inline env: a remote process gets its environment from a 0600 file it sources.
"""

from __future__ import annotations

import shlex
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pmctl.inventory import Host
from pmctl.transport.base import (
    TOKEN_VAR,
    HostUnreachable,
    ProcessHandle,
    Result,
    TransportError,
    env_file_text,
    group_script,
    wrapper_script,
)

_KNOWN_HOSTS_LOCK = threading.Lock()


def _AppendPolicy(known_hosts: Path) -> Any:  # noqa: N802 - a policy factory
    """``--accept-new-host-keys``: accept an unknown key and append it to known_hosts."""
    from paramiko import MissingHostKeyPolicy
    from paramiko.hostkeys import HostKeyEntry

    # Only for hosts with no key on record: paramiko itself refuses a known host that offers
    # a key of another type (BadHostKeyException), which the tests check.
    class AppendPolicy(MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            client.get_host_keys().add(hostname, key.get_name(), key)
            with _KNOWN_HOSTS_LOCK:
                known_hosts.parent.mkdir(parents=True, exist_ok=True)
                with known_hosts.open("a", encoding="utf-8") as fh:
                    fh.write(HostKeyEntry([hostname], key).to_line())
                known_hosts.chmod(0o600)

    return AppendPolicy()


KEEPALIVE_S = 5  # idle connections send something this often, so a dead peer is noticed
DEAD_AFTER_S = 15.0  # unacknowledged this long (at least twice the connect timeout): gone
STALL_S = 60.0  # a file transfer without progress, or a channel that does not open, fails
LOST_RETRY_S = 30.0  # a host found unreachable is not tried again for this long


class SshTransport:
    """One lazily opened Fabric connection to one host."""

    def __init__(
        self, host: Host, known_hosts: str, connect_timeout: float, accept_new_host_keys: bool = False
    ) -> None:
        self.host = host
        self.known_hosts = known_hosts
        self.connect_timeout = connect_timeout
        self.accept_new = accept_new_host_keys
        self.dead_after = max(DEAD_AFTER_S, 2 * connect_timeout)
        self.lost: HostUnreachable | None = None
        self._lost_at = 0.0
        self._conn: Any = None
        self._conn_lock = threading.Lock()  # one connection, whichever thread asks first

    def _where(self) -> str:
        return f"host {self.host.name} ({self.host.address}:{self.host.port})"

    def _connection(self) -> Any:
        with self._conn_lock:
            if self.lost is not None and time.monotonic() - self._lost_at < LOST_RETRY_S:
                raise HostUnreachable(self.lost.what, self.lost.where, self.lost.hint)  # a fresh one per call
            if self._conn is None:
                self._conn = self._open()
                self.lost = None
            return self._conn

    def _open(self) -> Any:
        from fabric import Connection  # lazy: keeps `pmctl --help` light
        from paramiko import RejectPolicy

        kwargs: dict[str, Any] = {"banner_timeout": self.connect_timeout, "auth_timeout": self.connect_timeout,
                                  "channel_timeout": STALL_S}
        if self.host.identity_file:
            kwargs.update(key_filename=[self.host.identity_file], look_for_keys=False)
        conn = Connection(
            self.host.address, user=self.host.user, port=self.host.port,
            connect_timeout=max(1, int(self.connect_timeout)), connect_kwargs=kwargs,
        )
        kh = Path(self.known_hosts)
        if kh.is_file():
            # Not load_host_keys(): that makes paramiko rewrite the whole file on a new key,
            # and parallel connections would overwrite each other's additions.
            conn.client.get_host_keys().load(str(kh))
        conn.client.set_missing_host_key_policy(_AppendPolicy(kh) if self.accept_new else RejectPolicy())
        try:
            conn.open()
            # A half-dead link must end in an error, not a hang: keepalives on the session,
            # the kernel gives up on unacknowledged data, file transfers on a stall.
            conn.transport.set_keepalive(KEEPALIVE_S)
            if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux; elsewhere the keepalives only
                conn.transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(self.dead_after * 1000))
            conn.sftp().get_channel().settimeout(STALL_S)
        except Exception as exc:
            conn.close()
            raise self._connect_error(exc) from exc
        return conn

    def _connect_error(self, exc: Exception) -> TransportError:
        import paramiko

        if isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
            return TransportError(
                f"unknown host key, refused (not in {self.known_hosts})", self._where(),
                "verify the key and add it (ssh-keyscan), or pass --accept-new-host-keys",
            )
        if isinstance(exc, paramiko.BadHostKeyException):
            return TransportError(
                f"host key does not match {self.known_hosts}: refused", self._where(),
                "if the host was reinstalled, remove its old line from known_hosts",
            )
        if isinstance(exc, paramiko.AuthenticationException):
            return TransportError(
                "authentication failed", self._where(), "check user and identity_file or your ssh agent"
            )
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return self._mark_lost(f"connect timed out after {self.connect_timeout:g} s")
        if isinstance(exc, OSError):  # refused, no route: paramiko's NoValidConnectionsError too
            return self._mark_lost(f"cannot connect: {exc}")
        return TransportError(
            f"cannot connect: {exc}", self._where(), "check the address, port and that sshd runs there"
        )

    def _mark_lost(self, why: str) -> HostUnreachable:
        self.lost = HostUnreachable(
            f"unreachable: {why}", self._where(),
            "check that it is up and on the network, and that sshd runs there",
        )
        self._lost_at = time.monotonic()
        return self.lost

    def _failure(self, conn: Any, message: str, exc: Exception, connection: bool = True) -> TransportError:
        """The error for a call on ``conn`` that raised ``exc``. A file that cannot be moved
        on a connection that still works (``connection`` False and paramiko's transport
        active) is a plain TransportError. Otherwise the host's sshd is asked for a fresh TCP
        connect: no answer makes the error ``HostUnreachable``. The connection is dropped (the
        next call opens a new one), except after a command that only ran past its timeout on a
        connection that still works: that lost its own channel, and dropping the connection
        would fail every other thread's call in flight on it."""
        from invoke.exceptions import CommandTimedOut

        if not connection and conn.is_connected:
            return TransportError(f"{message}: {exc}", self._where())
        keep = isinstance(exc, CommandTimedOut) and conn.is_connected
        if not keep:
            self._drop(conn)
        try:
            socket.create_connection((self.host.address, self.host.port), timeout=self.connect_timeout).close()
        except OSError as probe:
            if keep:
                self._drop(conn)  # the host is gone: so is its connection
            return self._mark_lost(f"{message} ({type(exc).__name__}), and sshd does not answer: {probe or 'timed out'}")
        return TransportError(f"{message}: {type(exc).__name__}: {exc}".splitlines()[0], self._where())

    def run(self, cmd: str, timeout: float) -> Result:
        conn = self._connection()
        try:
            r = conn.run(cmd, hide=True, warn=True, timeout=max(1, int(timeout)), in_stream=False)
        except Exception as exc:
            raise self._failure(conn, "command failed", exc) from exc
        return Result(r.exited, r.stdout, r.stderr)

    def _drop(self, conn: Any = None) -> None:
        """Closes ``conn`` (default: the current connection); one another thread has
        opened since stays."""
        with self._conn_lock:
            conn = conn or self._conn
            if conn is self._conn:
                self._conn = None
        if conn is not None:
            conn.close()

    def start(
        self, name: str, cmd: str, env: Mapping[str, str], run_dir: str, token: str
    ) -> ProcessHandle:
        d = shlex.quote(run_dir)
        self.run(f"mkdir -p {d} && rm -f {d}/{name}.pid {d}/{name}.rc", 30)
        self.write_text(f"{run_dir}/{name}.env", env_file_text({**env, TOKEN_VAR: token}))
        inner = shlex.quote(wrapper_script(name, cmd, run_dir))
        # The token is not a secret: inline it so the leader carries it from its first instant.
        r = self.run(
            f"{TOKEN_VAR}={token} setsid nohup bash -c {inner} >/dev/null 2>&1 </dev/null & "
            f"for i in $(seq 200); do [ -s {d}/{name}.pid ] && break; sleep 0.05; done; "
            f"cat {d}/{name}.pid",
            30,
        )
        try:
            pgid = int(r.stdout.strip())
        except ValueError as exc:
            raise TransportError(f"could not start {name}: {r.stderr.strip()}", self._where()) from exc
        return ProcessHandle(self.host.name, name, pgid, token, run_dir)

    def alive(self, handle: ProcessHandle) -> bool:
        return self.run(group_script(handle.pgid, handle.token, "alive"), 20).stdout.strip() == "1"

    def poll(self, handle: ProcessHandle) -> int | None:
        out = self.run(f"cat {shlex.quote(handle.rc_path)} 2>/dev/null", 20).stdout.strip()
        return int(out) if out.lstrip("-").isdigit() else None

    def stop(self, handle: ProcessHandle, grace: float = 5.0) -> None:
        self.run(group_script(handle.pgid, handle.token, "stop", grace), grace + 20)

    def put(self, local: str, remote: str) -> None:
        parent = shlex.quote(str(Path(remote).parent))
        self.run(f"mkdir -p {parent}", 30)
        conn = self._connection()
        try:
            conn.put(local, remote)
        except Exception as exc:
            raise self._failure(conn, f"cannot copy {local} to {remote}", exc, connection=False) from exc

    def get(self, remote: str, local: str) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        conn = self._connection()
        try:
            conn.get(remote, local)
        except Exception as exc:
            raise self._failure(conn, f"cannot fetch {remote}", exc, connection=False) from exc

    def write_text(self, remote: str, text: str, mode: int = 0o600) -> None:
        parent = shlex.quote(str(Path(remote).parent))
        target = shlex.quote(remote)
        # Create the file empty with its final mode first, so content never sits world-readable.
        self.run(f"mkdir -p {parent} && rm -f {target} && (umask 077 && : > {target}) && chmod {mode:o} {target}", 30)
        conn = self._connection()
        try:
            with conn.sftp().open(remote, "w") as fh:
                fh.write(text.encode("utf-8"))
        except Exception as exc:
            raise self._failure(conn, f"cannot write {remote}", exc, connection=False) from exc

    def close(self) -> None:
        self._drop()
