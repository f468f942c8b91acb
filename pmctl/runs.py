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
import re
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
    # when the owning pmctl started (kernel clock ticks since boot): a reused pid is not it
    pmctl_start: str = ""

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["processes"] = [p.to_json() for p in self.processes]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunEntry:
        """The entry, after checking every value that reaches a shell or a signal has pmctl's
        own shape (the ledger is a file anyone with the folder can edit)."""
        d = dict(d)
        d["processes"] = [ProcessHandle.from_json(p) for p in d.get("processes", [])]
        entry = cls(**d)
        bad = _malformed(entry)
        if bad:
            raise LedgerError(bad)
        return entry


class LedgerError(ValueError):
    """A run ledger whose values pmctl did not write."""


_SAFE = re.compile(r"[A-Za-z0-9._-]+")
_TOKEN = re.compile(r"[0-9a-f]{16}")


def _malformed(e: RunEntry) -> str:
    """What in ``e`` is not of pmctl's making ('' when all is)."""
    if not _SAFE.fullmatch(e.run_id):
        return f"run id {e.run_id!r}"
    if not isinstance(e.pmctl_pid, int) or isinstance(e.pmctl_pid, bool) or e.pmctl_pid <= 0:
        return f"pmctl pid {e.pmctl_pid!r}"
    for p in e.processes:
        if not _TOKEN.fullmatch(str(p.token)):
            return f"process token {p.token!r}"
        if not isinstance(p.pgid, int) or isinstance(p.pgid, bool) or p.pgid <= 1:
            return f"process group {p.pgid!r}"
        if not _SAFE.fullmatch(str(p.name)) or not _SAFE.fullmatch(str(p.host)):
            return f"process {p.name!r} on {p.host!r}"
    return ""


def load() -> RunEntry | None:
    """The recorded run, or None when nothing is recorded; a ledger with values pmctl did not
    write is a ``UserError`` (nothing in it is acted on)."""
    from pmctl.errors import UserError

    try:
        return RunEntry.from_json(json.loads(ledger_path().read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError):
        return None
    except LedgerError as exc:
        raise UserError(f"the run ledger holds a {exc} that pmctl did not write", str(ledger_path()),
                        "nothing in it was acted on; check who edited it, then remove the file") from None


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


def process_start(pid: int) -> str:
    """A process's start time (clock ticks since boot, /proc/<pid>/stat field 22); '' when
    it does not exist. With the pid it names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # the fields after the command's ")"


def owner_alive(entry: RunEntry) -> bool:
    """Whether the pmctl process that wrote ``entry`` still runs: its pid, with the start
    time the ledger recorded (a reused pid is another process), and pmctl in its command."""
    start = process_start(entry.pmctl_pid)
    if not start or (entry.pmctl_start and start != entry.pmctl_start):
        return False
    try:
        return b"pmctl" in Path(f"/proc/{entry.pmctl_pid}/cmdline").read_bytes()
    except OSError:
        return False


def cleanup_cmd(run_dir: str, run_id: str) -> str:
    """Shell command removing a run's remote folder and its shared-memory segments."""
    return f"rm -rf {shlex.quote(run_dir)}; rm -rf /dev/shm/*{run_id}* 2>/dev/null; true"
