"""The two locks of a ``pmctl run``: its state folder (``runs.run_lock``: the ledger) and its
results folder (``results_lock``): two runs into one results folder would interleave their
cells, sweep each other's staging folders and replace each other's results. Each is an
``flock`` on a file holding the holder's pid, so it dies with its process (a killed run never
leaves it behind) and a refused run names the pid it waits for. Readers (``pmctl plot``,
``pmctl status``) take no lock: every result they read was renamed into place whole."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from pmctl.errors import UserError

RESULTS_LOCK = ".lock"


@contextmanager
def pid_lock(path: Path, what: str) -> Iterator[None]:
    """Holds an exclusive lock on ``path`` (written with this pid) for the block; when another
    process holds it, a ``UserError`` 'another pmctl run (pid N) <what>' at once; a folder
    pmctl cannot write to (permissions, a read-only file system) is a ``UserError`` too."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+", encoding="utf-8")  # closed by the with below
    except OSError as exc:
        raise UserError(f"cannot write into {path.parent}: {exc.strerror or exc}", "pmctl run",
                        "make it writable, or choose another folder (--results, PMCTL_STATE_DIR)") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            raise UserError(f"another pmctl run (pid {holder}) {what}", "pmctl run",
                            "wait for it, or stop it with pmctl stop") from None
        fh.truncate(0)
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield


@contextmanager
def results_lock(results: Path) -> Iterator[None]:
    """Held while a ``pmctl run`` writes cells into ``results`` (``<results>/.lock``). A
    results folder the lock had to create goes again when nothing else was written into it
    (a run stopped before its first cell leaves nothing behind)."""
    root = Path(results)
    created = not root.exists()
    with pid_lock(root / RESULTS_LOCK, f"is writing into {results}"):
        try:
            yield
        finally:
            if created and [p.name for p in root.iterdir()] == [RESULTS_LOCK]:
                # A run starting right now may recreate either: then both stay, harmlessly.
                with suppress(OSError):
                    (root / RESULTS_LOCK).unlink()
                    root.rmdir()
