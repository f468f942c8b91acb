"""One module per command group; importing a module registers its commands on ``app``."""

from __future__ import annotations


def register_all() -> None:
    """Imports every command module (each registers its commands on ``pmctl.app.app``)."""
    from pmctl.commands import cluster, experiments, plotting, simulate, trace_gen  # noqa: F401
