"""The Redis control-plane server: its config (pure) and a local server process.

The password lives only in 0600 files (the config, the client's password file): never on a
command line, so it never shows in ``ps`` or ``/proc/*/cmdline``. Protected mode on, bound to
the given addresses plus loopback, no persistence. ``render_config`` is shared with the
orchestration, which starts the same server on the master host over SSH.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CONFIG_NAME = "redis.conf"
PASSWORD_NAME = "password"
PID_NAME = "redis.pid"
LOG_NAME = "redis.log"
_LOOPBACK = "127.0.0.1"


class RedisServerError(RuntimeError):
    """The local redis-server could not be started; the message says why and where."""


def generate_password() -> str:
    """A fresh per-run password (192 random bits, hex so it needs no quoting anywhere)."""
    return secrets.token_hex(24)


def render_config(
    bind: list[str], port: int, password: str, workdir: str, *, daemonize: bool = False
) -> str:
    """The redis.conf text: protected, password-protected, bound to ``bind`` + loopback,
    no persistence, pid and log files in ``workdir``."""
    if not password or any(c in password for c in "\"\\\n\r "):
        raise ValueError("the control-plane password must be non-empty, without quotes/spaces")
    addrs = list(dict.fromkeys([*bind, _LOOPBACK]))
    wd = str(workdir)
    lines = [
        f"bind {' '.join(addrs)}",
        f"port {int(port)}",
        "protected-mode yes",
        f'requirepass "{password}"',
        f"daemonize {'yes' if daemonize else 'no'}",
        'save ""',
        "appendonly no",
        f'dir "{wd}"',
        f'pidfile "{os.path.join(wd, PID_NAME)}"',
        f'logfile "{os.path.join(wd, LOG_NAME)}"',
        "loglevel notice",
        "databases 1",
        # The password opens the control plane, not the server: no CONFIG (which could point
        # `dir` elsewhere and write files there) and no DEBUG for its holders.
        'rename-command CONFIG ""',
        'rename-command DEBUG ""',
    ]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Writes ``text`` to a new file readable only by its owner (0600 from creation)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def free_port(host: str = _LOOPBACK) -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class RedisServer:
    """A local password-protected redis-server for one run (tests, the local cluster).

    Use as a context manager or ``start()``/``stop()``. ``url`` and ``password_file`` are what
    clients need (``PMCTL_CONTROL_PASSWORD_FILE``).
    """

    def __init__(
        self,
        bind: list[str] | None = None,
        port: int | None = None,
        workdir: str | Path | None = None,
        password: str | None = None,
        executable: str = "redis-server",
        start_timeout_s: float = 10.0,
    ) -> None:
        self.bind = list(bind or [])
        self.port = port
        self.password = password or generate_password()
        self.executable = executable
        self.start_timeout_s = start_timeout_s
        self._given_workdir = Path(workdir) if workdir else None
        self.workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{_LOOPBACK}:{self.port}"

    @property
    def password_file(self) -> Path:
        assert self.workdir is not None, "server not started"
        return self.workdir / PASSWORD_NAME

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Writes the 0600 config and password file, starts the server, waits for PING."""
        exe = shutil.which(self.executable)
        if exe is None:
            raise RedisServerError(
                f"{self.executable} not found on PATH (install the redis-server package)"
            )
        if self._given_workdir:
            self._given_workdir.mkdir(parents=True, exist_ok=True)
            self.workdir = self._given_workdir
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix="pmctl-redis-"))
        write_private(self.password_file, self.password + "\n")
        attempts = 1 if self.port else 3  # a picked free port can be taken in between
        for attempt in range(attempts):
            port = self.port or free_port()
            try:
                self._launch(exe, port)
                return
            except RedisServerError:
                if attempt == attempts - 1:
                    self._cleanup_files()
                    raise

    def _launch(self, exe: str, port: int) -> None:
        assert self.workdir is not None
        self.port = port
        conf = self.workdir / CONFIG_NAME
        write_private(conf, render_config(self.bind, port, self.password, str(self.workdir)))
        self._proc = subprocess.Popen(
            [exe, str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the caller's terminal is ours to handle
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                raise RedisServerError(
                    f"redis-server on port {port} exited at start: {self._log_tail()}"
                )
            if self._answers_ping():
                return
            time.sleep(0.05)
        self._kill()
        raise RedisServerError(f"redis-server on port {port} did not answer PING in time")

    def _answers_ping(self) -> bool:
        import redis

        client = self._client(1.0)
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """SHUTDOWN NOSAVE, else kill the pid; then removes the server's files."""
        if self._proc is not None:
            import redis

            client = self._client(2.0)
            try:
                client.shutdown(nosave=True)
            except redis.exceptions.RedisError:
                pass  # the connection drops as the server exits; the wait below decides
            finally:
                client.close()
            try:
                self._proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self._kill()
            self._proc = None
        self._cleanup_files()

    def _client(self, timeout: float):
        """A client of this server on loopback, with no client-side retry."""
        import redis

        return redis.Redis(
            host=_LOOPBACK,
            port=self.port,
            password=self.password,
            socket_timeout=timeout,
            retry=_no_retry(),
        )

    def _kill(self) -> None:
        if self._proc is None:
            return
        try:
            os.kill(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._proc.wait(timeout=5.0)
        self._proc = None

    def _log_tail(self) -> str:
        assert self.workdir is not None
        try:
            lines = (self.workdir / LOG_NAME).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "empty log"

    def _cleanup_files(self) -> None:
        if self.workdir is None:
            return
        if self._given_workdir:
            for name in (CONFIG_NAME, PASSWORD_NAME, PID_NAME, LOG_NAME):
                (self.workdir / name).unlink(missing_ok=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _no_retry():
    """The server's own probes decide by polling: no client-side retry/backoff."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)
