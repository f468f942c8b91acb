"""One module per command group; importing a module registers its commands on ``app``."""

from __future__ import annotations

import importlib

_MODULES = ("simulate", "experiments", "cluster", "plotting")


def register_all() -> None:
    """Imports every command module that exists (so each registers its commands)."""
    for name in _MODULES:
        try:
            importlib.import_module(f"pmctl.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pmctl.commands.{name}":
                raise
