"""The Redis control-plane server: its config (pure) and a local server process.

Access control: the ``default`` user is off; the one user, ``pmctl``, authenticates with the
per-run password and may send only the commands the control-plane client sends, on the keys of
its namespace only (no pub/sub channels). The password lives only in 0600 files (the client's
password file; the config holds its SHA-256): never on a command line, so it never shows in
``ps`` or ``/proc/*/cmdline``. Optionally TLS only, with client certificates (``injector.tls``).
Protected mode on, bound to the given addresses plus loopback, no persistence.
``render_config`` is shared with the orchestration, which starts the same server on the master
host over SSH.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from injector.tls import TlsFiles, make_bundle, redis_kwargs, write_files

CONFIG_NAME = "redis.conf"
PASSWORD_NAME = "password"
PID_NAME = "redis.pid"
LOG_NAME = "redis.log"
TLS_DIR_NAME = "tls"
_LOOPBACK = "127.0.0.1"
ACL_USER = "pmctl"
KEY_ROOT = "pmctl:"  # every control-plane key starts with it; a run's with namespace(run_id)
# Every command injector.control sends (pipelines: MULTI/EXEC), and nothing else: no CONFIG,
# DEBUG, KEYS, FLUSH*, EVAL, MODULE, SHUTDOWN ... for the password's holders. AUTH is always
# allowed by Redis itself.
ACL_COMMANDS = ("ping", "hset", "hgetall", "expire", "multi", "exec", "rpush", "lrange", "del", "scan")
_NAMESPACE = re.compile(r"[A-Za-z0-9._:-]+")


class RedisServerError(RuntimeError):
    """The local redis-server could not be started; the message says why and where."""


def generate_password() -> str:
    """A fresh per-run password (192 random bits, hex so it needs no quoting anywhere)."""
    return secrets.token_hex(24)


def namespace(run_id: str) -> str:
    """The key prefix of one run, ``pmctl:<run_id>:`` (its ACL key pattern adds a ``*``)."""
    return f"{KEY_ROOT}{run_id}:"


def render_config(
    bind: list[str], port: int, password: str, workdir: str, *, keys: str = KEY_ROOT,
    tls: TlsFiles | None = None,
) -> str:
    """The redis.conf text: protected, bound to ``bind`` + loopback, no persistence, pid and
    log files in ``workdir``; the ``pmctl`` user (``password``) limited to the client's
    commands on the keys starting with ``keys``; the default user off. With ``tls``: TLS only
    on ``port`` (no plain port), client certificates required."""
    if not password or any(c in password for c in "\"\\\n\r "):
        raise ValueError("the control-plane password must be non-empty, without quotes/spaces")
    if not _NAMESPACE.fullmatch(keys):
        raise ValueError(f"key namespace {keys!r}: letters, digits and . _ : - only")
    addrs = list(dict.fromkeys([*bind, _LOOPBACK]))
    wd = str(workdir)
    digest = hashlib.sha256(password.encode()).hexdigest()
    lines = [
        f"bind {' '.join(addrs)}",
        *(_tls_lines(port, tls) if tls else [f"port {int(port)}"]),
        "protected-mode yes",
        "daemonize no",
        'save ""',
        "appendonly no",
        f'dir "{wd}"',
        f'pidfile "{os.path.join(wd, PID_NAME)}"',
        f'logfile "{os.path.join(wd, LOG_NAME)}"',
        "loglevel notice",
        "databases 1",
        # A connection starts as `default`: off, it can only AUTH as pmctl.
        "user default off resetpass resetkeys resetchannels -@all",
        # The password's hash only (`#`): the config file never holds the password itself.
        f"user {ACL_USER} on #{digest} ~{keys}* resetchannels -@all "
        + " ".join(f"+{c}" for c in ACL_COMMANDS),
    ]
    return "\n".join(lines) + "\n"


def _tls_lines(port: int, tls: TlsFiles) -> list[str]:
    return [
        "port 0",  # no plain listener at all: loopback clients use TLS too
        f"tls-port {int(port)}",
        f'tls-cert-file "{tls.cert}"',
        f'tls-key-file "{tls.key}"',
        f'tls-ca-cert-file "{tls.ca}"',
        "tls-auth-clients yes",
    ]


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
    """A local password-protected redis-server for one run (tests, benches).

    Use as a context manager or ``start()``/``stop()``. ``url``, ``password_file`` and, with
    ``tls``, ``tls_dir`` are what clients need (``PMCTL_CONTROL_PASSWORD_FILE``,
    ``PMCTL_CONTROL_TLS_DIR``). ``keys``: the key prefix its user may touch (default: every
    run's keys). ``tls``: TLS only, with a fresh CA whose server certificate names ``bind``
    and loopback.
    """

    def __init__(
        self,
        bind: list[str] | None = None,
        port: int | None = None,
        workdir: str | Path | None = None,
        password: str | None = None,
        executable: str = "redis-server",
        start_timeout_s: float = 10.0,
        *,
        keys: str = KEY_ROOT,
        tls: bool = False,
    ) -> None:
        self.bind = list(bind or [])
        self.port = port
        self.password = password or generate_password()
        self.executable = executable
        self.start_timeout_s = start_timeout_s
        self.keys = keys
        self.tls = tls
        self._given_workdir = Path(workdir) if workdir else None
        self.workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_for(_LOOPBACK)

    def url_for(self, address: str) -> str:
        """The URL that reaches this server at ``address`` (one it binds)."""
        return f"{'rediss' if self.tls else 'redis'}://{address}:{self.port}"

    @property
    def password_file(self) -> Path:
        assert self.workdir is not None, "server not started"
        return self.workdir / PASSWORD_NAME

    @property
    def tls_dir(self) -> Path | None:
        """The folder with the CA and the client's certificate and key (None: plain TCP)."""
        assert self.workdir is not None, "server not started"
        return self.workdir / TLS_DIR_NAME if self.tls else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Writes the 0600 config, password and TLS files, starts the server, waits for PING."""
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
        if self.tls_dir is not None:
            bundle = make_bundle([*self.bind, _LOOPBACK])
            write_files(self.tls_dir, {**bundle.files("server"), **bundle.files("client")})
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
        server_tls = TlsFiles.in_dir(self.tls_dir, "server") if self.tls_dir else None
        write_private(conf, render_config(
            self.bind, port, self.password, str(self.workdir), keys=self.keys, tls=server_tls,
        ))
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
        """TERM (the user may not SHUTDOWN; with no persistence Redis just exits), KILL
        after 5 s; then removes the server's files."""
        if self._proc is not None:
            self._proc.terminate()
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
            username=ACL_USER,
            password=self.password,
            socket_timeout=timeout,
            retry=_no_retry(),
            **redis_kwargs(TlsFiles.in_dir(self.tls_dir, "client") if self.tls_dir else None),
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
            shutil.rmtree(self.workdir / TLS_DIR_NAME, ignore_errors=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _no_retry():
    """The server's own probes decide by polling: no client-side retry/backoff."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)
