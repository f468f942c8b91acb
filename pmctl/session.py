"""A command's view of the cluster: the inventory, one transport per host (opened lazily and
closed at the end), the recorded host facts, and signal handling that lets cleanup finish.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pmctl import __version__, runs
from pmctl.inventory import Host, Inventory
from pmctl.transport import Transport, connect
from pmctl.transport.base import HostUnreachable

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GIT_TIMEOUT_S = 10.0


def _git_env() -> dict[str, str]:
    """Ours, not an inherited GIT_DIR's repository; read only (no index refresh, so no lock
    that a concurrent ``git commit`` would trip on)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return {**env, "GIT_OPTIONAL_LOCKS": "0"}


def git_version(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """``git_commit`` (HEAD) and ``git_dirty`` (tracked files changed, as ``git describe
    --dirty`` counts them) of the checkout pmctl runs from; {} when it is not one (an installed
    wheel), has no commit yet, or git is missing or refuses."""
    if not (root / ".git").exists():  # not a parent repository that merely holds a venv
        return {}
    try:
        r = subprocess.run(
            # safe.directory: a checkout owned by another user (root running a user's clone)
            ["git", "-c", f"safe.directory={root}", "-C", str(root), "status", "--porcelain=v2",
             "--branch", "--untracked-files=no"],
            capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
            env=_git_env(),
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    lines = r.stdout.splitlines() if r.returncode == 0 else []
    commit = next((ln.split()[2] for ln in lines if ln.startswith("# branch.oid ")), "")
    if not commit or commit == "(initial)":
        return {}
    return {"git_commit": commit, "git_dirty": any(not ln.startswith("#") for ln in lines)}


def facts_path(host: Host) -> Path:
    """Where ``setup`` records a host's fact sheet."""
    return runs.state_dir() / "hosts" / f"{host.name}.json"


class Session:
    """Use as a context manager: transports are closed on exit."""

    def __init__(self, inventory: Inventory, accept_new_host_keys: bool = False) -> None:
        self.inventory = inventory
        self.accept_new = accept_new_host_keys
        self._transports: dict[str, Transport] = {}
        self._shielded = 0
        self._pending: int | None = None
        self._received: int | None = None  # the first interrupting signal
        self._old_handlers: dict[int, Any] = {}

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        for t in self._transports.values():
            t.close()
        self._transports.clear()

    def transport(self, host: Host) -> Transport:
        if host.name not in self._transports:
            self._transports[host.name] = connect(self.inventory, host, self.accept_new)
        return self._transports[host.name]

    def unreachable(self) -> list[HostUnreachable]:
        """The hosts found not answering at all so far, in inventory order (each transport's
        own verdict: a run cannot go on without them)."""
        opened = [self._transports[h.name] for h in self.inventory.hosts if h.name in self._transports]
        return [t.lost for t in opened if t.lost is not None]

    def facts(self, host: Host) -> dict[str, Any]:
        """The host's fact sheet from the last ``setup`` ({} when never set up)."""
        try:
            return json.loads(facts_path(host).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def versions(self) -> dict[str, Any]:
        """Versions of the controlling side, for ``cell.json``: pmctl, its python and
        platform, and the project's git commit with a dirty flag where pmctl runs from a
        checkout (the stages' versions are the hosts' ``runtime``, ``pmctl.cellrecord``)."""
        return {"pmctl": __version__, "python": platform.python_version(),
                "platform": platform.platform(), **git_version()}

    # -- signals ----------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt, except inside ``shield()``
        where they are held until the shielded cleanup is over. SIGHUP is a dropped
        terminal or SSH session: without this, pmctl would die on the spot and leave the
        cell's stages and Redis running until ``pmctl stop``."""
        for sig in INTERRUPTS:
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def restore_signal_handlers(self) -> None:
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()

    def interrupt_reason(self) -> str:
        """Why the run was interrupted, for cell.json: the signal that did it."""
        return INTERRUPTS.get(self._received or signal.SIGINT, "interrupted")

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._received = self._received or signum
        if signum == signal.SIGHUP:
            _detach_from_terminal()
        if self._shielded:
            self._pending = signum
            return
        raise KeyboardInterrupt

    @contextmanager
    def shield(self) -> Iterator[None]:
        """Cleanup that a second Ctrl-C must not cut short."""
        self._shielded += 1
        try:
            yield
        finally:
            self._shielded -= 1
        if not self._shielded and self._pending is not None:
            self._pending = None
            raise KeyboardInterrupt


# The signals that interrupt a run, and what cell.json says about each.
INTERRUPTS: dict[int, str] = {
    signal.SIGINT: "interrupted by the user",
    signal.SIGTERM: "interrupted (SIGTERM)",
    signal.SIGHUP: "interrupted: the controlling terminal or session hung up (SIGHUP)",
}


def _detach_from_terminal() -> None:
    """Points stdout and stderr at /dev/null where they were the terminal that hung up: a
    write to it now fails (EIO), and the cleanup and summary must not die of that. A pipe or
    a file (``pmctl run > log``) still works and is kept. A character device, not isatty():
    a hung-up terminal answers no terminal ioctl, so isatty() says False."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            try:
                if stat.S_ISCHR(os.fstat(fd).st_mode):
                    os.dup2(devnull, fd)
            except OSError:  # closed: nothing to write to anyway
                continue
    finally:
        os.close(devnull)
