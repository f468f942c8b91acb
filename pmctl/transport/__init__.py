"""Transports: how pmctl reaches a host (``local`` processes or ``ssh`` through Fabric)."""

from __future__ import annotations

from pmctl.inventory import Host, Inventory
from pmctl.transport.base import ProcessHandle, Result, Transport, TransportError


def connect(inv: Inventory, host: Host, accept_new_host_keys: bool = False) -> Transport:
    """The transport for ``host`` as the inventory's cluster says (connections open lazily)."""
    if inv.cluster.transport == "local":
        from pmctl.transport.local import LocalTransport

        return LocalTransport(host)
    from pmctl.transport.ssh import SshTransport

    return SshTransport(host, inv.cluster.known_hosts, inv.cluster.connect_timeout, accept_new_host_keys)


__all__ = ["ProcessHandle", "Result", "Transport", "TransportError", "connect"]
