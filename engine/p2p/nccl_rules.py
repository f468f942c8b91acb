"""How p2p operations are posted: natively (gloo: tags match, operations progress
independently) or under NCCL's matching rules, emulated on gloo so that a CPU run deadlocks
exactly where an NCCL run would.

NCCL's rules, as emulated here (``--p2p-semantics nccl``):
- tags are ignored: between a pair of ranks on a communicator, the n-th send matches the
  n-th receive, whatever they carry;
- one stream per (communicator, peer), as ProcessGroupNCCL keeps one per peer: an operation
  starts only when the previous one on that stream has finished (on the 2-rank groups of the
  inline path, one per communicator);
- a send finishes only once its receive is posted (rendezvous).

Each stream is a thread that runs its operations one at a time, all with tag 0 (gloo then
matches in issue order, and its send waits for the posted receive). A wait blocked for
``watchdog_s`` with no operation of this rank finishing meanwhile raises
``P2PDeadlockError`` naming the rank, the peers and the pending operations: a plan that
deadlocks on NCCL fails in seconds instead of hanging until the collective timeout. Only time
blocked in a wait counts: a rank computing for longer while a receive is pending is not stalled.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.distributed as dist

from engine.p2p import Semantics

_POLL_S = 0.02  # how often a waiting thread looks at the watchdog
_NCCL_TAG = 0  # every operation under NCCL rules: tags carry no meaning there


class P2PDeadlockError(RuntimeError):
    """No p2p operation of this rank progressed for the watchdog's time under NCCL rules."""


@dataclass(frozen=True)
class Channel:
    """A communicator p2p travels on, and its name in reports (``link 1_2 F``)."""

    group: object  # a torch process group; None = the main group
    name: str


class Handle(Protocol):
    def wait(self) -> object:
        """Blocks until the operation finished (raises its error)."""
        ...


class P2PComm(Protocol):
    """Posts non-blocking sends and receives; ``what`` describes the operation for reports."""

    semantics: Semantics

    def isend(self, buf: torch.Tensor, peer: int, channel: Channel, tag: int, what: str) -> Handle: ...

    def irecv(self, buf: torch.Tensor, peer: int, channel: Channel, tag: int, what: str) -> Handle: ...


class NativeComm:
    """gloo's (or NCCL's own) p2p as torch.distributed posts it."""

    semantics: Semantics = "native"

    def isend(self, buf: torch.Tensor, peer: int, channel: Channel, tag: int, what: str) -> Handle:
        return dist.isend(buf, peer, group=channel.group, tag=tag)

    def irecv(self, buf: torch.Tensor, peer: int, channel: Channel, tag: int, what: str) -> Handle:
        return dist.irecv(buf, peer, group=channel.group, tag=tag)


@dataclass(eq=False)  # identity: ops are removed from the pending list by identity
class _Op:
    """One operation on a stream; ``done`` is set when it finished (``error`` if it failed)."""

    send: bool
    buf: torch.Tensor
    peer: int
    what: str
    stream: _Stream
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def wait(self) -> None:
        """Waits for the operation, watching this rank's progress meanwhile."""
        entered = self.stream.comm.clock()
        while not self.done.wait(_POLL_S):
            self.stream.comm.check_progress(entered)
        if self.error is not None:
            raise RuntimeError(f"{self.what} on {self.stream.channel.name} failed: "
                               f"{self.error}") from self.error


class _Stream(threading.Thread):
    """One (communicator, peer) stream: runs its operations in issue order, one at a time."""

    def __init__(self, comm: NcclRulesComm, channel: Channel, peer: int) -> None:
        super().__init__(name=f"nccl-stream-{channel.name}-{peer}", daemon=True)
        self.comm, self.channel, self.peer = comm, channel, peer
        self.ops: queue.Queue[_Op] = queue.Queue()
        self.broken: BaseException | None = None  # NCCL: a failed op poisons its communicator

    def run(self) -> None:
        while True:
            op = self.ops.get()
            try:
                if self.broken is not None:
                    raise self.broken
                post = dist.isend if op.send else dist.irecv
                post(op.buf, op.peer, group=self.channel.group, tag=_NCCL_TAG).wait()
            except BaseException as exc:  # noqa: BLE001 - raised by the op's wait
                self.broken = op.error = exc
            self.comm.finished(op)


class NcclRulesComm:
    """p2p under NCCL's rules on gloo (see the module docstring)."""

    semantics: Semantics = "nccl"

    def __init__(self, rank: int, watchdog_s: float, clock=time.monotonic) -> None:
        self.rank, self.watchdog_s, self.clock = rank, watchdog_s, clock
        self._streams: dict[tuple[int, int], _Stream] = {}
        self._pending: list[_Op] = []  # in issue order
        self._lock = threading.Lock()
        self._progress = clock()  # last time an operation finished

    def isend(self, buf: torch.Tensor, peer: int, channel: Channel, tag: int, what: str) -> Handle:
        return self._post(True, buf, peer, channel, what)

    def irecv(self, buf: torch.Tensor, peer: int, channel: Channel, tag: int, what: str) -> Handle:
        return self._post(False, buf, peer, channel, what)

    def _post(self, send: bool, buf: torch.Tensor, peer: int, channel: Channel, what: str) -> _Op:
        key = (id(channel.group), peer)
        with self._lock:
            stream = self._streams.get(key)
            if stream is None:
                stream = self._streams[key] = _Stream(self, channel, peer)
                stream.start()
            op = _Op(send, buf, peer, what, stream)
            self._pending.append(op)
        stream.ops.put(op)
        return op

    def finished(self, op: _Op) -> None:
        """A stream finished ``op`` (successfully or not)."""
        with self._lock:
            self._pending.remove(op)
            self._progress = self.clock()
        op.done.set()

    def check_progress(self, waiting_since: float) -> None:
        """Raises ``P2PDeadlockError`` if operations are pending and none finished for
        ``watchdog_s`` of a wait that began at ``waiting_since`` (time before it, the rank
        was busy elsewhere, not stalled)."""
        with self._lock:
            stalled = self.clock() - max(self._progress, waiting_since)
            if not self._pending or stalled < self.watchdog_s:
                return
            report = deadlock_report(self.rank, stalled, self._pending)
        raise P2PDeadlockError(report)


def deadlock_report(rank: int, stalled_s: float, pending: list[_Op]) -> str:
    """One line: the rank, the peers it waits on, and per stream the operation at its head
    and what is queued behind it (a send queued behind a receive is the classic cycle)."""
    streams: dict[_Stream, list[_Op]] = {}
    for op in pending:
        streams.setdefault(op.stream, []).append(op)
    parts = []
    for stream, ops in streams.items():
        behind = ops[1:]
        sends = sum(op.send for op in behind)
        queued = f" (then {len(behind) - sends} recv, {sends} send queued)" if behind else ""
        parts.append(f"{ops[0].what} on {stream.channel.name}{queued}")
    peers = sorted({op.peer for op in pending})
    return (f"p2p deadlock under nccl semantics: rank {rank} waits on rank(s) "
            f"{', '.join(map(str, peers))}, no p2p progress for {stalled_s:.1f} s; "
            f"pending: {'; '.join(parts)}")


def make_comm(semantics: Semantics, rank: int, watchdog_s: float) -> P2PComm:
    """The p2p poster for ``--p2p-semantics``."""
    return NativeComm() if semantics == "native" else NcclRulesComm(rank, watchdog_s)
