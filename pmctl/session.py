"""A command's view of the cluster: the inventory, one transport per host (opened lazily and
closed at the end), the recorded host facts, and signal handling that lets cleanup finish.
"""

from __future__ import annotations

import json
import platform
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pmctl import __version__, runs
from pmctl.inventory import Host, Inventory
from pmctl.transport import Transport, connect


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

    def facts(self, host: Host) -> dict[str, Any]:
        """The host's fact sheet from the last ``setup`` ({} when never set up)."""
        try:
            return json.loads(facts_path(host).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def versions(self) -> dict[str, Any]:
        """Versions of the controlling side, for ``cell.json``."""
        return {"pmctl": __version__, "python": platform.python_version()}

    # -- signals ----------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM raise KeyboardInterrupt, except inside ``shield()`` where they
        are held until the shielded cleanup is over."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def restore_signal_handlers(self) -> None:
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()

    def _on_signal(self, signum: int, _frame: Any) -> None:
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
