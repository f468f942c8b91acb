"""The delegate path: per direction (send-forward, send-backward, recv-forward,
recv-backward) a pool of K worker threads that move messages through host memory over their
own gloo groups, so the compute thread hands a tensor over and goes on.

Groups: one 2-rank gloo group per (link, direction, worker) (``engine.p2p.groups``).
Micro-batch m travels on worker m mod K. The compute thread stages the tensor into a host
buffer (``engine.p2p.staging``: pinned memory and a copy stream on CUDA, a copy thread on
CPU); a send worker sleeps the link's injected delay, waits until the buffer is ready, sends
it and returns the buffer to the pool; K workers keep K messages in flight. A crashed link
(``inf``) only kills the inline path: delegates model the CPU path that survives a dead NIC,
so they send without delay. Receivers pre-post: at iteration start each receive worker is
given, in the sender's op order, the micro-batches it will carry this iteration. So on each
group the sender sends and the receiver receives in the same order, one at a time: safe
under NCCL's rules too (no tags needed).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from engine.clock import SharedClock
from engine.p2p.groups import DIRECTIONS
from engine.p2p.inline import RecvEvent, SendEvent
from engine.p2p.messages import Message, MessageSpec, check_matched, unpack
from engine.p2p.nccl_rules import Channel, P2PComm
from engine.p2p.staging import HostStaging, Staged, make_staging

_STOP = object()


@dataclass
class _SendJob:
    staged: Staged
    dst: int
    mb: int
    handover_ms: float
    delay_s: float


class _Worker(threading.Thread):
    """Base: a daemon thread that runs jobs from its queue and keeps the first error."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.jobs: queue.Queue = queue.Queue()
        self.error: BaseException | None = None

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is _STOP:
                return
            try:
                if self.error is None:
                    self.handle(job)
            except BaseException as exc:  # noqa: BLE001 - surfaced to the compute thread by the pool
                self.error = exc
            finally:
                self.jobs.task_done()

    def handle(self, job: object) -> None:
        raise NotImplementedError


class _SendWorker(_Worker):
    def __init__(self, name: str, direction: str, comm: P2PComm, channel: Channel,
                 staging: HostStaging, clock: SharedClock, events: list[SendEvent],
                 lock: threading.Lock) -> None:
        super().__init__(name)
        self.direction, self.comm, self.channel = direction, comm, channel
        self.staging, self.clock = staging, clock
        self.events, self.lock = events, lock

    def handle(self, job: _SendJob) -> None:
        if job.delay_s > 0 and not math.isinf(job.delay_s):
            time.sleep(job.delay_s)
        job.staged.ready.wait()
        what = f"send {self.direction} mb{job.mb} to {job.dst}"
        self.comm.isend(job.staged.buf, job.dst, self.channel, job.mb, what).wait()
        self.staging.release(job.staged)
        ev = SendEvent(job.dst, job.mb, job.handover_ms, self.clock.now_ms(), job.delay_s)
        with self.lock:
            self.events.append(ev)


class _Slot:
    """One expected message: filled by a receive worker, taken by the compute thread."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.message: Message | None = None
        self.event: RecvEvent | None = None


class _RecvWorker(_Worker):
    def __init__(self, name: str, direction: str, comm: P2PComm, channel: Channel,
                 spec: MessageSpec, clock: SharedClock) -> None:
        super().__init__(name)
        self.direction, self.comm, self.channel = direction, comm, channel
        self.spec, self.clock = spec, clock

    def handle(self, job: tuple[int, int, _Slot]) -> None:
        src, mb, slot = job
        buf = self.spec.empty("cpu")
        posted = self.clock.now_ms()
        what = f"recv {self.direction} mb{mb} from {src}"
        self.comm.irecv(buf, src, self.channel, mb, what).wait()
        arrived = self.clock.now_ms()
        slot.message = unpack(buf, self.spec)
        check_matched(slot.message, mb, src, self.channel.name)
        slot.event = RecvEvent(src, mb, posted, arrived, slot.message.sent_ms)
        slot.done.set()


@dataclass
class DelegatePool:
    """This stage's delegate workers towards both neighbours."""

    rank: int
    world: int
    k: int
    spec: MessageSpec
    clock: SharedClock
    device: torch.device
    channels: dict[tuple[int, str, int], Channel]  # (link, direction, worker), this rank's
    comm: P2PComm
    sent: list[SendEvent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _senders: dict[str, list[_SendWorker]] = field(default_factory=dict)
    _receivers: dict[str, list[_RecvWorker]] = field(default_factory=dict)
    _slots: dict[tuple[str, int], _Slot] = field(default_factory=dict)
    staging: HostStaging = field(init=False)

    def __post_init__(self) -> None:
        r = self.rank
        self.staging = make_staging(self.spec, self.device)
        # direction -> the link on which this rank sends / receives it
        send_links = {"F": r if r < self.world - 1 else None, "B": r - 1 if r > 0 else None}
        recv_links = {"F": r - 1 if r > 0 else None, "B": r if r < self.world - 1 else None}
        for d in DIRECTIONS:
            if send_links[d] is not None:
                self._senders[d] = [
                    _SendWorker(f"send-{d}-{w}", d, self.comm, self.channels[(send_links[d], d, w)],
                                self.staging, self.clock, self.sent, self._lock)
                    for w in range(self.k)]
            if recv_links[d] is not None:
                self._receivers[d] = [
                    _RecvWorker(f"recv-{d}-{w}", d, self.comm, self.channels[(recv_links[d], d, w)],
                                self.spec, self.clock) for w in range(self.k)]
        for workers in (*self._senders.values(), *self._receivers.values()):
            for t in workers:
                t.start()

    def prepost(self, direction: str, src: int, mbs: list[int]) -> None:
        """Queues the receives of ``mbs`` (in the sender's order) from ``src``."""
        for mb in mbs:
            slot = _Slot()
            self._slots[(direction, mb)] = slot
            self._receivers[direction][mb % self.k].jobs.put((src, mb, slot))

    def send(self, direction: str, tensor: torch.Tensor, dst: int, mb: int,
             delay_s: float) -> None:
        """Stages the tensor into host memory and hands it to worker ``mb mod K``; returns
        at once."""
        handover = self.clock.now_ms()
        staged = self.staging.stage(tensor, handover, mb)
        self._check()
        self._senders[direction][mb % self.k].jobs.put(
            _SendJob(staged, dst, mb, handover, delay_s))

    def recv(self, direction: str, mb: int) -> tuple[Message, RecvEvent]:
        """Waits for the pre-posted message of ``mb``; moves it to the compute device."""
        slot = self._slots.pop((direction, mb))
        while not slot.done.wait(0.5):
            self._check()
        assert slot.message is not None and slot.event is not None
        msg = slot.message
        if self.device.type == "cuda":
            msg = Message(msg.tensor.to(self.device), msg.sent_ms, msg.mb)
        return msg, slot.event

    def drain(self) -> list[SendEvent]:
        """Waits until every queued send is delivered; returns and forgets their events."""
        for workers in self._senders.values():
            for w in workers:
                w.jobs.join()
        self._check()
        with self._lock:
            out = list(self.sent)
            self.sent.clear()
        return out

    def _check(self) -> None:
        for workers in (*self._senders.values(), *self._receivers.values()):
            for w in workers:
                if w.error is not None:
                    raise RuntimeError(f"delegate {w.name} failed: {w.error}") from w.error

    def close(self) -> None:
        """Stops the workers (they are idle between iterations)."""
        workers = [w for ws in (*self._senders.values(), *self._receivers.values()) for w in ws]
        for w in workers:
            w.jobs.put(_STOP)
        for w in workers:
            w.join()
        self.staging.close()
