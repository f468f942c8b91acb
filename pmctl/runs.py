"""The run ledger (``.pmctl/ledger/<run_id>.json``): what pmctl started where, one entry per
cell, so that ``pmctl stop`` and ``pmctl status`` can find exactly our processes (by recorded
process group and token) even from another shell or after pmctl itself was killed.

A cell's entry is written when the cell starts and rewritten (atomically) after every start;
it goes when the cell ends with everything stopped and removed. A cell whose cleanup failed
keeps its entry, so what it left stays traceable while later cells run; ``pmctl stop`` walks
every entry. A run dir kept because its logs did not come back (``kept_dirs``) stays until
``pmctl stop --purge``. Secrets (the Redis password, the client's TLS files) live in
``secrets/<run_id>.pw`` and ``secrets/<run_id>.tls/``, never in the entry; they go with it.
The single-file ledger of an older pmctl (``running.json``) is moved into ``ledger/`` once.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from engine.jsonio import write_json_atomic
from pmctl.locks import pid_lock
from pmctl.transport.base import ProcessHandle

STATE_DIR_VAR = "PMCTL_STATE_DIR"


def state_dir() -> Path:
    """Local state folder: ``$PMCTL_STATE_DIR`` or ``./.pmctl``."""
    return Path(os.environ.get(STATE_DIR_VAR, ".pmctl"))


def ledger_dir() -> Path:
    """The folder of the ledger's entries, one ``<run_id>.json`` each."""
    return state_dir() / "ledger"


def secret_path(run_id: str) -> Path:
    """The local 0600 file with a run's control-plane password."""
    return state_dir() / "secrets" / f"{run_id}.pw"


def client_tls_dir(run_id: str) -> Path:
    """This machine's copy of a run's client TLS files, beside its password file."""
    return state_dir() / "secrets" / f"{run_id}.tls"


@contextmanager
def run_lock() -> Iterator[None]:
    """Held for the measured part of a whole ``pmctl run``: one run per state folder at a
    time, so two runs never share the ledger or sweep each other's staging folders. The
    lock dies with its process, so a killed run never leaves it behind."""
    folder = state_dir()
    with pid_lock(folder / "run.lock", f"is using {folder}"):
        yield


@dataclass
class RunEntry:
    """One cell, in flight or ended with something left: where its control plane is, which
    groups it started, which run dirs are still to remove or kept."""

    run_id: str
    pmctl_pid: int
    inventory: str
    cell: dict[str, Any]
    started: str
    control_url: str = ""
    secret_file: str = ""  # secret_path(run_id) once the control plane has a password
    processes: list[ProcessHandle] = field(default_factory=list)
    remote_dirs: dict[str, str] = field(default_factory=dict)  # host -> run dir to remove
    # when the owning pmctl started (kernel clock ticks since boot): a reused pid is not it
    pmctl_start: str = ""
    token: str = ""  # the cell's token: the sweep finds what no recorded group holds
    # host -> run dir kept because its logs did not come back; removed by pmctl stop --purge
    kept_dirs: dict[str, str] = field(default_factory=dict)

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
_RUN_ID = re.compile(r"[A-Za-z0-9._-]+-[0-9a-f]{8}")  # pmctl.cellrun's <figure-method>-<8 hex>
_TOKEN = re.compile(r"[0-9a-f]{16}")


def _malformed(e: RunEntry) -> str:
    """What in ``e`` is not of pmctl's making ('' when all is)."""
    # the run id reaches a shell glob (cleanup_cmd): one of pmctl's shape only, never "a"
    if not isinstance(e.run_id, str) or not _RUN_ID.fullmatch(e.run_id):
        return f"run id {e.run_id!r}"
    if not isinstance(e.pmctl_pid, int) or isinstance(e.pmctl_pid, bool) or e.pmctl_pid <= 0:
        return f"pmctl pid {e.pmctl_pid!r}"
    # read by pmctl status and sent to the control plane: this run's password file only
    if e.secret_file and os.path.abspath(str(e.secret_file)) != os.path.abspath(secret_path(e.run_id)):
        return f"secret file {e.secret_file!r}"
    if e.token and not _TOKEN.fullmatch(str(e.token)):
        return f"token {e.token!r}"
    for d in (*e.remote_dirs.values(), *e.kept_dirs.values()):
        # removed with rm -rf: only a run dir of this very run (<work dir>/runs/<run id>)
        p = PurePosixPath(str(d))
        if p.name != e.run_id or p.parent.name != "runs" or ".." in p.parts:
            return f"run dir {d!r}"
    for p in e.processes:
        if not _TOKEN.fullmatch(str(p.token)):
            return f"process token {p.token!r}"
        if not isinstance(p.pgid, int) or isinstance(p.pgid, bool) or p.pgid <= 1:
            return f"process group {p.pgid!r}"
        if not _SAFE.fullmatch(str(p.name)) or not _SAFE.fullmatch(str(p.host)):
            return f"process {p.name!r} on {p.host!r}"
    return ""


def load_all() -> list[RunEntry]:
    """Every recorded entry, oldest first; a file that is not an entry's JSON is skipped, an
    entry with values pmctl did not write is a ``UserError`` (nothing in the ledger is acted
    on)."""
    from pmctl.errors import UserError

    _migrate_old_ledger()
    found: list[tuple[str, float, RunEntry]] = []
    for f in sorted(ledger_dir().glob("*.json")):
        try:
            d = json.loads(f.read_text(encoding="utf-8"))
            entry = RunEntry.from_json(d)
            if f.name != f"{entry.run_id}.json":
                raise LedgerError(f"entry {f.name} for run id {entry.run_id!r}")
            found.append((str(entry.started), f.stat().st_mtime, entry))
        except FileNotFoundError:
            continue  # cleared meanwhile
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError, AttributeError):
            continue
        except LedgerError as exc:
            raise UserError(f"the run ledger holds a {exc} that pmctl did not write", str(f),
                            "nothing in it was acted on; check who edited it, then remove the file") from None
    return [e for _s, _m, e in sorted(found, key=lambda t: (t[0], t[1]))]


def _migrate_old_ledger() -> None:
    """Moves an older pmctl's single-file ledger (``running.json``, one entry) into
    ``ledger/<run_id>.json``, checked like any entry; a file that is not an entry's JSON
    stays where it is, untouched."""
    from pmctl.errors import UserError

    old = state_dir() / "running.json"
    try:
        entry = RunEntry.from_json(json.loads(old.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError, AttributeError):
        return
    except LedgerError as exc:
        raise UserError(f"the run ledger holds a {exc} that pmctl did not write", str(old),
                        "nothing in it was acted on; check who edited it, then remove the file") from None
    if not (ledger_dir() / f"{entry.run_id}.json").exists():
        save(entry)
    old.unlink(missing_ok=True)


def active(entry: RunEntry) -> bool:
    """Whether ``entry`` may still have something running or to remove (not only kept dirs)."""
    return bool(entry.processes or entry.remote_dirs) or owner_alive(entry)


def load() -> RunEntry | None:
    """The newest active entry (the cell in flight while a run is live), or None."""
    return next((e for e in reversed(load_all()) if active(e)), None)


def save(entry: RunEntry) -> None:
    """Atomically records ``entry`` (called after every start)."""
    write_json_atomic(ledger_dir() / f"{entry.run_id}.json", entry.to_json())


def clear(entry: RunEntry) -> None:
    """Forgets the entry and its local secrets: the password file and the client's TLS
    files (derived from the run id: also those of a pmctl killed before it recorded them)."""
    secret_path(entry.run_id).unlink(missing_ok=True)
    shutil.rmtree(client_tls_dir(entry.run_id), ignore_errors=True)
    (ledger_dir() / f"{entry.run_id}.json").unlink(missing_ok=True)


def write_secret(run_id: str, secret: str) -> Path:
    """Stores a run's control-plane password locally (0600) for ``status``."""
    p = secret_path(run_id)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    p.unlink(missing_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return p


def log_traceback(exc: BaseException, what: str) -> None:
    """Appends ``what`` and ``exc``'s traceback to ``pmctl.log`` in the state folder, where
    pmctl's internal errors go; a disk that refuses it costs only the note."""
    try:
        path = state_dir() / "pmctl.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"{what}\n{''.join(traceback.format_exception(exc))}\n")
    except OSError:
        pass


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
    time the ledger recorded (a reused pid is another process), and pmctl in its command. An
    entry with no start time names no process for sure: it is not alive (never signalled)."""
    start = process_start(entry.pmctl_pid)
    if not start or start != entry.pmctl_start:
        return False
    try:
        return b"pmctl" in Path(f"/proc/{entry.pmctl_pid}/cmdline").read_bytes()
    except OSError:
        return False


def cleanup_cmd(run_dir: str, run_id: str) -> str:
    """Shell command removing a run's remote folder and its shared-memory segments."""
    return f"rm -rf {shlex.quote(run_dir)}; rm -rf /dev/shm/*{run_id}* 2>/dev/null; true"
