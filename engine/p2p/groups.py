"""The communicators p2p travels on, created by every rank in one fixed order at start
(``new_group`` is collective) and kept by the two ranks of each.

Inline: one 2-rank group per link and direction (``F``: activations i -> i+1, ``B``: gradients
i+1 -> i), so each communicator carries one direction: its sender only sends, its receiver
only receives, both in the sender's op order. That is safe under NCCL's rules (no tags, one
stream per communicator, matching in issue order) whatever else the ranks post. Delegates:
one gloo group per (link, direction, worker); micro-batch m travels on worker m mod K.

``shared`` is the layout before per-link groups (every link on the main group, relying on
tags): each stage posts its receives from a neighbour before its sends to it on the same
stream, which deadlocks under NCCL's rules. Only the tests choose it, to show the emulation
catches that.
"""

from __future__ import annotations

from datetime import timedelta

import torch.distributed as dist

from engine.p2p import Layout
from engine.p2p.nccl_rules import Channel

DIRECTIONS = ("F", "B")  # F: stage i -> i+1 (activations); B: i+1 -> i (gradients)


def direction_to(rank: int, peer: int) -> str:
    """The direction of a message between neighbours ``rank`` -> ``peer``."""
    return "F" if peer > rank else "B"


def inline_channels(world: int, timeout: timedelta | None, backend: str,
                    layout: Layout) -> dict[tuple[int, str], Channel]:
    """This rank's inline channels by (link, direction); ``backend`` and ``timeout`` (None:
    torch's default) of the per-link groups."""
    rank = dist.get_rank()
    mine: dict[tuple[int, str], Channel] = {}
    for link in range(world - 1):
        for d in DIRECTIONS:
            if layout == "shared":
                channel = Channel(None, "the main group")
            else:
                g = dist.new_group([link, link + 1], backend=backend, timeout=timeout)
                channel = Channel(g, f"link {link}_{link + 1} {d}")
            if rank in (link, link + 1):
                mine[(link, d)] = channel
    return mine


def delegate_channels(world: int, k: int, timeout: timedelta) -> dict[tuple[int, str, int], Channel]:
    """This rank's delegate channels by (link, direction, worker)."""
    rank = dist.get_rank()
    mine: dict[tuple[int, str, int], Channel] = {}
    for link in range(world - 1):
        for d in DIRECTIONS:
            for w in range(k):
                g = dist.new_group([link, link + 1], backend="gloo", timeout=timeout)
                if rank in (link, link + 1):
                    mine[(link, d, w)] = Channel(g, f"delegate {link}_{link + 1} {d} worker {w}")
    return mine
