"""The control-plane client: the one place that talks to Redis.

Keys are namespaced ``pmctl:<run_id>:...``. A fault is one hash written by one ``HSET``
(atomic: a reader sees all of an update or none of it). Heartbeats are one hash per stage,
written with its expiry in one MULTI/EXEC. Values are JSON so types survive the round trip.
The commands sent here are exactly those the server's ACL allows (``ACL_COMMANDS``).

It logs in as the ``pmctl`` user. The password comes from the caller, else the file named by
``PMCTL_CONTROL_PASSWORD_FILE`` (what pmctl gives its stages), else ``PMCTL_CONTROL_PASSWORD``;
it is never part of the URL or a command line. A ``rediss://`` URL means TLS with the run's CA
and client certificate, from the folder the caller names, else ``PMCTL_CONTROL_TLS_DIR``.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from injector.redis_server import ACL_USER, namespace
from injector.tls import TLS_DIR_ENV, TlsFiles, redis_kwargs
from injector.trace import Fault

PASSWORD_ENV = "PMCTL_CONTROL_PASSWORD"
PASSWORD_FILE_ENV = "PMCTL_CONTROL_PASSWORD_FILE"
HEARTBEAT_TTL_S = 120
_PASSWORD_HINT = f"set {PASSWORD_ENV} or {PASSWORD_FILE_ENV}"


class ControlPlaneError(Exception):
    """The control plane is unreachable, refuses us, or holds something unreadable."""


def resolve_password(explicit: str | None = None) -> str | None:
    """The password: explicit, else the environment-named file, else the environment. The
    file wins: pmctl names its run's own password file to the stages, and a password some
    shell exported for another purpose must not replace it."""
    if explicit:
        return explicit
    path = os.environ.get(PASSWORD_FILE_ENV)
    if not path:
        return os.environ.get(PASSWORD_ENV) or None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise ControlPlaneError(
            f"cannot read the control-plane password file {path} ({exc.strerror or exc})"
        ) from exc


class ControlClient:
    """Talks to one run's namespace of the control plane at ``url`` (``redis://HOST:PORT``,
    or ``rediss://HOST:PORT`` for TLS with the files in ``tls_dir``)."""

    def __init__(
        self, url: str, run_id: str, password: str | None = None, tls_dir: str | Path | None = None
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss") or not parsed.hostname or not parsed.port:
            raise ControlPlaneError(
                f"bad control-plane URL {url!r}: expected redis://HOST:PORT or rediss://HOST:PORT"
            )
        if parsed.password:
            raise ControlPlaneError(
                f"control-plane URL must not carry the password: {_PASSWORD_HINT} instead"
            )
        if not run_id or ":" in run_id:
            raise ControlPlaneError(f"bad run id {run_id!r}: non-empty, without ':'")
        self.url = f"{parsed.scheme}://{parsed.hostname}:{parsed.port}"
        self.run_id = run_id
        self._password = resolve_password(password)
        tls = _tls_files(tls_dir, self.url) if parsed.scheme == "rediss" else None
        self._redis = redis.Redis(
            host=parsed.hostname,
            port=parsed.port,
            username=ACL_USER,
            password=self._password,
            socket_timeout=10.0,
            socket_connect_timeout=5.0,
            decode_responses=True,
            # a few quick retries ride out a busy host; a refused password also counts as a
            # connection error in redis-py, so long backoffs would only delay a clear error
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            **redis_kwargs(tls),
        )

    # -- plumbing ---------------------------------------------------------------------

    def key(self, *parts: object) -> str:
        """The namespaced key ``pmctl:<run_id>:<parts...>``."""
        return namespace(self.run_id) + ":".join(str(p) for p in parts)

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except redis.exceptions.AuthenticationError as exc:
            if self._password is None:
                raise ControlPlaneError(
                    f"control plane {self.url} requires a password ({_PASSWORD_HINT})"
                ) from exc
            raise ControlPlaneError(
                f"control plane {self.url} rejected the password (check {_PASSWORD_HINT})"
            ) from exc
        except redis.exceptions.ResponseError as exc:
            if str(exc).startswith(("NOAUTH", "WRONGPASS")):
                raise ControlPlaneError(
                    f"control plane {self.url} refused {what}: {exc} ({_PASSWORD_HINT})"
                ) from exc
            raise ControlPlaneError(f"control plane {self.url}: {what} failed: {exc}") from exc
        except redis.exceptions.ConnectionError as exc:
            raise ControlPlaneError(
                f"cannot reach the control plane at {self.url} for {what} ({exc})"
            ) from exc
        except redis.exceptions.RedisError as exc:
            raise ControlPlaneError(f"control plane {self.url}: {what} failed: {exc}") from exc

    def ping(self) -> None:
        """Raises ``ControlPlaneError`` unless the server answers with our password."""
        with self._guard("ping"):
            self._redis.ping()

    def close(self) -> None:
        self._redis.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def clear(self) -> int:
        """Deletes every key of this run; returns how many."""
        with self._guard("clear"):
            keys = list(self._redis.scan_iter(match=self.key("*"), count=200))
            return int(self._redis.delete(*keys)) if keys else 0

    # -- the fault ------------------------------------------------------------------

    def publish_fault(self, fault: Fault, published_by: int | None = None) -> None:
        """Publishes the fault in force: ONE atomic HSET of every field of ``Fault.to_json``
        (links, per-link delays, NIC-crash flag, since-iteration, epoch, trace time), so a
        reader never sees half of an update."""
        fields = {**fault.to_json(), "published_at": time.time(), "published_by": published_by}
        with self._guard("publish_fault"):
            self._redis.hset(self.key("fault"), mapping=_encode(fields))

    def read_fault(self) -> Fault | None:
        """The last published fault, or None when none was published for this run."""
        with self._guard("read_fault"):
            raw = self._redis.hgetall(self.key("fault"))
        if not raw:
            return None
        try:
            return Fault.from_json(_decode(raw))
        except (ValueError, TypeError, KeyError) as exc:
            raise ControlPlaneError(
                f"control plane {self.url}: unreadable fault at {self.key('fault')} ({exc})"
            ) from exc

    def publish_detected(
        self, fault: Fault, iteration: int, link_excess_ms: list[float], **extra: Any
    ) -> None:
        """Publishes the fault the detector measured (one atomic HSET)."""
        fields = {
            **fault.to_json(),
            "iteration": iteration,
            "link_excess_ms": link_excess_ms,
            "published_at": time.time(),
            **extra,
        }
        with self._guard("publish_detected"):
            self._redis.hset(self.key("detected"), mapping=_encode(fields))

    def read_detected(self) -> dict[str, Any] | None:
        """The detector's last publication (with ``fault`` as a ``Fault``), or None."""
        with self._guard("read_detected"):
            raw = self._redis.hgetall(self.key("detected"))
        if not raw:
            return None
        data = _decode(raw)
        data["fault"] = Fault.from_json(data)
        return data

    # -- progress -------------------------------------------------------------------

    def heartbeat(
        self, stage: int, iteration: int, phase: str, last_iteration_ms: float | None, **extra: Any
    ) -> None:
        """This stage's progress: a hash with a timestamp, expiring if the stage goes quiet."""
        fields = {
            "stage": stage,
            "iteration": iteration,
            "phase": phase,
            "last_iteration_ms": last_iteration_ms,
            "time": time.time(),
            **extra,
        }
        key = self.key("hb", stage)
        with self._guard("heartbeat"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(key, mapping=_encode(fields))
            pipe.expire(key, HEARTBEAT_TTL_S)
            pipe.execute()

    def heartbeats(self) -> dict[int, dict[str, Any]]:
        """The latest heartbeat per stage (stages that never beat or expired are absent)."""
        out: dict[int, dict[str, Any]] = {}
        with self._guard("heartbeats"):
            for key in self._redis.scan_iter(match=self.key("hb", "*"), count=200):
                raw = self._redis.hgetall(key)
                if raw:
                    data = _decode(raw)
                    out[int(data["stage"])] = data
        return dict(sorted(out.items()))

    def report_error(self, stage: int, message: str) -> None:
        """Appends one stage's one-line failure reason."""
        record = json.dumps({"stage": stage, "message": message, "time": time.time()})
        with self._guard("report_error"):
            self._redis.rpush(self.key("errors"), record)

    def errors(self) -> list[dict[str, Any]]:
        """Every reported error, oldest first."""
        with self._guard("errors"):
            raw = self._redis.lrange(self.key("errors"), 0, -1)
        return [json.loads(r) for r in raw]

    def set_status(self, **fields: Any) -> None:
        """Merges run-level status fields (state, cell, ...) in one atomic HSET."""
        if not fields:
            return
        with self._guard("set_status"):
            self._redis.hset(self.key("status"), mapping=_encode(fields))

    def status(self) -> dict[str, Any]:
        """The run-level status fields ({} when none)."""
        with self._guard("status"):
            return _decode(self._redis.hgetall(self.key("status")))


def _tls_files(tls_dir: str | Path | None, url: str) -> TlsFiles:
    """The client's TLS files: from ``tls_dir``, else the folder ``PMCTL_CONTROL_TLS_DIR``
    names; each must be readable (a clear error now, not an SSL error at the first call)."""
    directory = tls_dir or os.environ.get(TLS_DIR_ENV)
    if not directory:
        raise ControlPlaneError(
            f"control plane {url} uses TLS: set {TLS_DIR_ENV} to the run's TLS folder"
        )
    files = TlsFiles.in_dir(directory, "client")
    for path in (files.ca, files.cert, files.key):
        if not os.access(path, os.R_OK):
            raise ControlPlaneError(
                f"control plane {url} uses TLS: cannot read {path} (set {TLS_DIR_ENV} to the "
                "run's TLS folder)"
            )
    return files


def _encode(fields: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(_finite(v), allow_nan=False) for k, v in fields.items()}


def _finite(value: Any) -> Any:
    """Strict JSON has no inf/nan: they travel as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _decode(raw: dict[str, str]) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in raw.items()}
