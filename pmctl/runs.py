"""The run ledger (``.pmctl/running.json``): what pmctl started where, so that ``pmctl stop``
and ``pmctl status`` can find exactly our processes (by recorded process group and token)
even from another shell or after pmctl itself was killed.

Every change rewrites the file atomically. Secrets (the Redis password) live in a separate
0600 file referenced from the ledger, never in it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.jsonio import write_json_atomic
from pmctl.transport.base import ProcessHandle

STATE_DIR_VAR = "PMCTL_STATE_DIR"


def state_dir() -> Path:
    """Local state folder: ``$PMCTL_STATE_DIR`` or ``./.pmctl``."""
    return Path(os.environ.get(STATE_DIR_VAR, ".pmctl"))


def ledger_path() -> Path:
    return state_dir() / "running.json"


@contextmanager
def run_lock() -> Iterator[None]:
    """Held for the measured part of a whole ``pmctl run``: one run per state folder at a
    time, so two runs never share the ledger or sweep each other's staging folders. The
    lock dies with its process, so a killed run never leaves it behind."""
    from pmctl.errors import UserError

    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / "run.lock", "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            raise UserError(
                f"another pmctl run (pid {holder}) is using {folder}", "pmctl run",
                "wait for it, or stop it with pmctl stop",
            ) from None
        fh.truncate(0)
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


@dataclass
class RunEntry:
    """One cell in flight: where its control plane is and which groups it started."""

    run_id: str
    pmctl_pid: int
    inventory: str
    cell: dict[str, Any]
    started: str
    control_url: str = ""
    secret_file: str = ""  # local 0600 file with the control-plane password
    processes: list[ProcessHandle] = field(default_factory=list)
    remote_dirs: dict[str, str] = field(default_factory=dict)  # host -> run dir to remove

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["processes"] = [p.to_json() for p in self.processes]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunEntry:
        d = dict(d)
        d["processes"] = [ProcessHandle.from_json(p) for p in d.get("processes", [])]
        return cls(**d)


def load() -> RunEntry | None:
    """The recorded run, or None when nothing is recorded."""
    try:
        return RunEntry.from_json(json.loads(ledger_path().read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, TypeError, KeyError):
        return None


def save(entry: RunEntry) -> None:
    """Atomically records ``entry`` (called after every start)."""
    write_json_atomic(ledger_path(), entry.to_json())


def clear(entry: RunEntry | None = None) -> None:
    """Forgets the run (and its local secret file)."""
    if entry and entry.secret_file:
        Path(entry.secret_file).unlink(missing_ok=True)
    ledger_path().unlink(missing_ok=True)


def write_secret(run_id: str, secret: str) -> Path:
    """Stores a run's control-plane password locally (0600) for ``status``."""
    p = state_dir() / "secrets" / f"{run_id}.pw"
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    p.unlink(missing_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return p


def pmctl_alive(pid: int) -> bool:
    """Whether the pmctl process that owns the ledger still runs."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"pmctl" in cmdline


def cleanup_cmd(run_dir: str, run_id: str) -> str:
    """Shell command removing a run's remote folder and its shared-memory segments."""
    return f"rm -rf {shlex.quote(run_dir)}; rm -rf /dev/shm/*{run_id}* 2>/dev/null; true"
