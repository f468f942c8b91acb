"""The clock shared by all stages of an iteration, and op timers on it.

Times are seconds of ``time.perf_counter`` (CLOCK_MONOTONIC, shared by all processes of a
machine) shifted by a per-rank offset to rank 0's clock. Offsets are estimated once at start by
ping-pong with rank 0 for the ranks on another clock than rank 0's (zero for the others). A
machine is told by its kernel's boot id, not its hostname: VMs cloned from one image share a
hostname but not a clock. Each iteration's origin is agreed by an all-reduce(max) of the ranks'
arrival times: every rank enters it before any leaves, so the origin is no later than the
moment any rank starts its first op.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

_PING_ROUNDS = 8
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def host_identity(boot_id: Path | None = None) -> str:
    """What tells one clock from another: the kernel's boot id (``boot_id``, default
    ``BOOT_ID``), random for every boot of every machine (two VMs cloned with one hostname
    differ; containers on one kernel, which share CLOCK_MONOTONIC, agree); the hostname only
    where there is none (not Linux)."""
    try:
        return f"boot {(boot_id or BOOT_ID).read_text().strip()}"
    except OSError:
        return f"host {socket.gethostname()}"


def identity_key(identity: str) -> int:
    """``identity`` as a non-negative int64 (63 bits of its sha256), for a gloo all_gather."""
    return int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big") >> 1


def clock_groups(identities: Sequence[Hashable]) -> list[int]:
    """Per rank, the lowest rank with the same host identity: ranks of one group read one
    clock, so only a rank outside rank 0's group needs its offset measured."""
    first: dict[Hashable, int] = {}
    return [first.setdefault(ident, rank) for rank, ident in enumerate(identities)]


def estimate_offsets(rank: int, world: int, force: bool = False) -> list[float]:
    """Per rank, seconds to add to its local clock to read rank 0's (collective). Ranks on
    rank 0's machine share its clock: zero, unless ``force`` (tests of the ping-pong)."""
    # host identity as a CPU tensor (gloo), not all_gather_object (may pick the NCCL device)
    key = torch.tensor([identity_key(host_identity())], dtype=torch.int64)
    keys = [torch.zeros_like(key) for _ in range(world)]
    dist.all_gather(keys, key)
    groups = clock_groups([int(k) for k in keys])
    peers = [p for p in range(1, world) if force or groups[p] != groups[0]]
    offsets = torch.zeros(world, dtype=torch.float64)
    for peer in peers:
        if rank == 0:
            buf = torch.zeros(1, dtype=torch.float64)
            for _ in range(_PING_ROUNDS):
                dist.recv(buf, peer)
                dist.send(torch.tensor([time.perf_counter()], dtype=torch.float64), peer)
        elif rank == peer:
            best_rtt, best_off = float("inf"), 0.0
            reply = torch.zeros(1, dtype=torch.float64)
            for _ in range(_PING_ROUNDS):
                t1 = time.perf_counter()
                dist.send(torch.tensor([t1], dtype=torch.float64), 0)
                dist.recv(reply, 0)
                t3 = time.perf_counter()
                if t3 - t1 < best_rtt:
                    best_rtt, best_off = t3 - t1, float(reply[0]) - (t1 + t3) / 2
            offsets[rank] = best_off
    if peers:
        dist.all_reduce(offsets)  # each measured rank filled only its own entry
    return offsets.tolist()


@dataclass
class SharedClock:
    """Milliseconds since the agreed start of the current iteration."""

    offset_s: float = 0.0
    t0: float = 0.0

    def global_now(self) -> float:
        return time.perf_counter() + self.offset_s

    def sync(self) -> None:
        """Agrees the iteration origin with every rank (collective on the default group)."""
        t = torch.tensor([self.global_now()], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        self.t0 = float(t[0])

    def now_ms(self) -> float:
        return (self.global_now() - self.t0) * 1000.0


@dataclass
class CpuTimer:
    """Times host-side ops directly on the shared clock."""

    clock: SharedClock

    def mark(self) -> float:
        return self.clock.now_ms()

    def resolve(self, mark: float) -> float:
        return mark


@dataclass
class CudaTimer:
    """Times device ops with CUDA events relative to an event recorded at the iteration
    origin (the stream is idle then: the previous iteration ended with a synchronize)."""

    clock: SharedClock
    _base: torch.cuda.Event | None = None
    _base_ms: float = 0.0
    _events: list = field(default_factory=list)

    def start_iteration(self) -> None:
        self._base = torch.cuda.Event(enable_timing=True)
        self._base.record()
        self._base_ms = self.clock.now_ms()
        self._events = []

    def mark(self) -> float:
        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        self._events.append(ev)
        return float(len(self._events) - 1)

    def resolve(self, mark: float) -> float:
        assert self._base is not None
        return self._base_ms + self._base.elapsed_time(self._events[int(mark)])
