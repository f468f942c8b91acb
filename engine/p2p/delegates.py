"""The delegate path: per direction (send-forward, send-backward, recv-forward,
recv-backward) a pool of K worker threads that move messages through host memory over their
own gloo groups, so the compute thread hands a tensor over and goes on.

Groups: one 2-rank gloo group per (link, direction, worker), created by every rank in the
same fixed order at start. Micro-batch m travels on worker m mod K. A send worker sleeps the
link's injected delay, then sends; K workers keep K messages in flight. A crashed link
(``inf``) only kills the inline path: delegates model the CPU path that survives a dead NIC,
so they send without delay. Receivers pre-post: at iteration start each receive worker is
given, in the sender's op order, the micro-batches it will carry this iteration.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from engine.clock import SharedClock
from engine.p2p.inline import RecvEvent, SendEvent
from engine.p2p.messages import Message, MessageSpec, pack, unpack

DIRECTIONS = ("F", "B")  # F: stage i -> i+1 (activations); B: i+1 -> i (gradients)
_STOP = object()


def create_groups(world: int, k: int, timeout: timedelta) -> dict[tuple[int, str, int], object]:
    """Every (link, direction, worker) group, created collectively; keeps this rank's own."""
    rank = dist.get_rank()
    mine: dict[tuple[int, str, int], object] = {}
    for link in range(world - 1):
        for direction in DIRECTIONS:
            for w in range(k):
                g = dist.new_group([link, link + 1], backend="gloo", timeout=timeout)
                if rank in (link, link + 1):
                    mine[(link, direction, w)] = g
    return mine


@dataclass
class _SendJob:
    tensor: torch.Tensor
    dst: int
    mb: int
    handover_ms: float
    delay_s: float
    ready: torch.cuda.Event | None  # CUDA: the device-to-host copy's completion


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
    def __init__(self, name: str, group: object, spec: MessageSpec, clock: SharedClock,
                 events: list[SendEvent], lock: threading.Lock) -> None:
        super().__init__(name)
        self.group, self.spec, self.clock = group, spec, clock
        self.events, self.lock = events, lock

    def handle(self, job: _SendJob) -> None:
        if job.delay_s > 0 and not math.isinf(job.delay_s):
            time.sleep(job.delay_s)
        if job.ready is not None:
            job.ready.synchronize()
        buf = pack(job.tensor, job.handover_ms, job.mb, self.spec)
        dist.send(buf, job.dst, group=self.group, tag=job.mb)
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
    def __init__(self, name: str, group: object, spec: MessageSpec, clock: SharedClock) -> None:
        super().__init__(name)
        self.group, self.spec, self.clock = group, spec, clock

    def handle(self, job: tuple[int, int, _Slot]) -> None:
        src, mb, slot = job
        buf = self.spec.empty("cpu")
        posted = self.clock.now_ms()
        dist.recv(buf, src, group=self.group, tag=mb)
        arrived = self.clock.now_ms()
        slot.message = unpack(buf, self.spec)
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
    groups: dict[tuple[int, str, int], object]
    sent: list[SendEvent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _senders: dict[str, list[_SendWorker]] = field(default_factory=dict)
    _receivers: dict[str, list[_RecvWorker]] = field(default_factory=dict)
    _slots: dict[tuple[str, int], _Slot] = field(default_factory=dict)
    _copy_stream: object = None

    def __post_init__(self) -> None:
        r = self.rank
        # direction -> the link on which this rank sends / receives it
        send_links = {"F": r if r < self.world - 1 else None, "B": r - 1 if r > 0 else None}
        recv_links = {"F": r - 1 if r > 0 else None, "B": r if r < self.world - 1 else None}
        for d in DIRECTIONS:
            if send_links[d] is not None:
                self._senders[d] = [
                    _SendWorker(f"send-{d}-{w}", self.groups[(send_links[d], d, w)], self.spec,
                                self.clock, self.sent, self._lock) for w in range(self.k)]
            if recv_links[d] is not None:
                self._receivers[d] = [
                    _RecvWorker(f"recv-{d}-{w}", self.groups[(recv_links[d], d, w)], self.spec,
                                self.clock) for w in range(self.k)]
        for workers in (*self._senders.values(), *self._receivers.values()):
            for t in workers:
                t.start()
        if self.device.type == "cuda":
            self._copy_stream = torch.cuda.Stream()

    def prepost(self, direction: str, src: int, mbs: list[int]) -> None:
        """Queues the receives of ``mbs`` (in the sender's order) from ``src``."""
        for mb in mbs:
            slot = _Slot()
            self._slots[(direction, mb)] = slot
            self._receivers[direction][mb % self.k].jobs.put((src, mb, slot))

    def send(self, direction: str, tensor: torch.Tensor, dst: int, mb: int,
             delay_s: float) -> None:
        """Hands the tensor to worker ``mb mod K``; returns at once."""
        handover = self.clock.now_ms()
        ready = None
        if self.device.type == "cuda":
            host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            stream = self._copy_stream
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                host.copy_(tensor, non_blocking=True)
                ready = torch.cuda.Event()
                ready.record(stream)
            # The caller may drop its last reference now (a B's input gradient): the
            # allocator must not hand the block to the compute stream before the copy read it.
            tensor.record_stream(stream)
            tensor = host
        self._check()
        self._senders[direction][mb % self.k].jobs.put(
            _SendJob(tensor, dst, mb, handover, delay_s, ready))

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
