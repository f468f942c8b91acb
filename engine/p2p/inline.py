"""The inline path: sends and receives posted from the compute thread, on one 2-rank group per
link and direction (``engine.p2p.groups``). An injected delay blocks the compute thread
before each send on the slow link (on CUDA: a sleep kernel on the compute stream), so
consecutive sends serialise behind it: the head-of-line blocking of the paper. Receives are
posted (non-blocking) at the iteration start in the sender's order, so data flows as soon as
it is sent; the compute thread waits on a receive when its op needs it. A group carries one
direction only, and its receives are posted in its sender's order, so the path needs neither
tags nor early receives to match: it is safe under NCCL's rules (``engine.p2p.nccl_rules``).
Every handle is waited on (gloo hangs otherwise, pytorch issue 132644): receives when
consumed, sends at the end of the iteration. Megatron's 1F1B exchanges
(``engine.p2p.batched``) use ``post_send`` and wait on their sends themselves."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from engine.clock import SharedClock
from engine.cuda_sleep import delay_cycles
from engine.errors import LinkDownError
from engine.p2p.groups import direction_to
from engine.p2p.messages import Message, MessageSpec, check_matched, pack, unpack
from engine.p2p.nccl_rules import Channel, Handle, P2PComm


@dataclass(frozen=True)
class SendEvent:
    """A send as the op log records it (ms on the shared clock)."""

    dst: int
    mb: int
    start_ms: float
    end_ms: float
    delay_s: float


@dataclass(frozen=True)
class RecvEvent:
    """A receive: posted/arrived on the receiver, sent_ms from the sender's header."""

    src: int
    mb: int
    posted_ms: float
    arrived_ms: float
    sent_ms: float


@dataclass
class InlineP2P:
    """Sends/receives on the link groups from the calling (compute) thread."""

    rank: int
    spec: MessageSpec
    clock: SharedClock
    device: torch.device
    channels: dict[tuple[int, str], Channel]  # (link, direction), this rank's
    comm: P2PComm
    cuda_cycles_per_ms: float = 0.0
    host_staged: bool = False  # CUDA stages sharing a GPU: NCCL refuses that, go via gloo
    _pending: list = field(default_factory=list)  # (handle, buffer) of each send
    _posted: dict = field(default_factory=dict)  # (src, mb) -> (handle, buffer)

    def send(self, tensor: torch.Tensor, dst: int, mb: int, delay_s: float) -> SendEvent:
        """Posts the send of micro-batch ``mb`` to ``dst`` after the injected delay; it is
        waited on at ``drain``."""
        handle, buf, event = self.post_send(tensor, dst, mb, delay_s)
        self._pending.append((handle, buf))
        return event

    def post_send(self, tensor: torch.Tensor, dst: int, mb: int,
                  delay_s: float) -> tuple[Handle, torch.Tensor, SendEvent]:
        """Blocks the compute thread (stream) for the injected delay, then posts the send;
        returns its handle and buffer (the caller waits on it, keeping the buffer alive)."""
        start = self.clock.now_ms()
        if math.isinf(delay_s):
            link = min(self.rank, dst)
            raise LinkDownError(link, self.rank, dst)
        if delay_s > 0:
            if self.device.type == "cuda":
                torch.cuda._sleep(delay_cycles(delay_s, self.cuda_cycles_per_ms))
            else:
                time.sleep(delay_s)
        buf = pack(tensor, start, mb, self.spec)
        if self.host_staged:
            buf = buf.cpu()
        d = direction_to(self.rank, dst)
        handle = self.comm.isend(buf, dst, self._channel(dst, d), mb, f"send {d} mb{mb} to {dst}")
        return handle, buf, SendEvent(dst, mb, start, self.clock.now_ms(), delay_s)

    def prepost(self, src: int, mbs: list[int]) -> None:
        """Posts the receives of ``mbs`` from ``src`` (in the sender's order)."""
        d = direction_to(src, self.rank)
        channel = self._channel(src, d)
        for mb in mbs:
            buf = self.spec.empty("cpu" if self.host_staged else self.device)
            handle = self.comm.irecv(buf, src, channel, mb, f"recv {d} mb{mb} from {src}")
            self._posted[(src, mb)] = (handle, buf)

    def recv(self, src: int, mb: int) -> tuple[Message, RecvEvent]:
        """Waits for micro-batch ``mb`` from ``src`` (blocks the compute thread)."""
        posted = self.clock.now_ms()
        if (src, mb) not in self._posted:
            self.prepost(src, [mb])
        handle, buf = self._posted.pop((src, mb))
        handle.wait()
        arrived = self.clock.now_ms()
        msg = unpack(buf.to(self.device), self.spec)
        check_matched(msg, mb, src, self._channel(src, direction_to(src, self.rank)).name)
        return msg, RecvEvent(src, mb, posted, arrived, msg.sent_ms)

    def drain(self) -> None:
        """Waits for every send posted this iteration."""
        for handle, _buf in self._pending:
            handle.wait()
        self._pending.clear()

    def _channel(self, peer: int, direction: str) -> Channel:
        return self.channels[(min(self.rank, peer), direction)]

