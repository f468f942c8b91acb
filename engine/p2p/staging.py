"""Host staging for the delegate path: the compute thread hands a tensor over and goes on; its
bytes are copied asynchronously into a reusable wire buffer (header + payload) in host memory;
the send worker waits until that copy is ready, sends the buffer, and gives it back.

The copy is the only device-specific part (a ``Copier``): on CUDA a device-to-host copy into
pinned memory on a side stream, ready when its event has fired; on CPU a copy thread, ready
when its event is set, which stands in for the copy stream so that the buffer pool and the
ready/wait ordering run, and are tested, on any machine.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Protocol

import torch

from engine.p2p.messages import HEADER_BYTES, MessageSpec, check_payload, header_bytes


class Ready(Protocol):
    def wait(self) -> None:
        """Blocks until the copy into the host buffer is complete (raises its error)."""
        ...


class Copier(Protocol):
    """Starts copies of a tensor's bytes into host memory."""

    pin: bool  # whether host buffers should be page-locked

    def copy(self, dst: torch.Tensor, src: torch.Tensor) -> Ready:
        """Starts copying ``src``'s bytes into the host uint8 view ``dst``."""
        ...

    def close(self) -> None: ...


@dataclass
class Staged:
    """A message on its way: its wire buffer and when the buffer holds the payload."""

    buf: torch.Tensor
    ready: Ready


class _CudaReady:
    def __init__(self, event: torch.cuda.Event) -> None:
        self.event = event

    def wait(self) -> None:
        self.event.synchronize()


class CudaCopier:
    """Device-to-pinned-host copies on one side stream, ordered after the compute stream's
    work up to the hand-over."""

    pin = True

    def __init__(self) -> None:
        self.stream = torch.cuda.Stream()

    def copy(self, dst: torch.Tensor, src: torch.Tensor) -> Ready:
        flat = src.contiguous().view(-1).view(torch.uint8)
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            dst.copy_(flat, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        # The caller may drop its last reference now (a B's input gradient): the allocator
        # must not hand the block to the compute stream before the copy read it.
        flat.record_stream(self.stream)
        return _CudaReady(event)

    def close(self) -> None:
        self.stream.synchronize()


class _ThreadReady:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.error: BaseException | None = None

    def wait(self) -> None:
        self.event.wait()
        if self.error is not None:
            raise RuntimeError(f"host staging copy failed: {self.error}") from self.error


_STOP = None


class ThreadCopier:
    """The CPU stand-in for the copy stream: one thread copies in hand-over order."""

    pin = False

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="host-staging-copy", daemon=True)
        self._thread.start()

    def copy(self, dst: torch.Tensor, src: torch.Tensor) -> Ready:
        ready = _ThreadReady()
        self._jobs.put((dst, src, ready))
        return ready

    def _run(self) -> None:
        while (job := self._jobs.get()) is not _STOP:
            dst, src, ready = job
            try:
                dst.copy_(src.contiguous().view(-1).view(torch.uint8))
            except BaseException as exc:  # noqa: BLE001 - raised by the sender's wait
                ready.error = exc
            ready.event.set()

    def close(self) -> None:
        self._jobs.put(_STOP)
        self._thread.join()


class HostStaging:
    """A pool of wire buffers in host memory and the copier that fills them. A buffer goes
    back to the pool only after its send completed, so a reused buffer is never overwritten
    while the network still reads it."""

    def __init__(self, spec: MessageSpec, copier: Copier) -> None:
        self.spec, self.copier = spec, copier
        self._free: list[torch.Tensor] = []
        self._lock = threading.Lock()
        self.allocated = 0  # buffers ever created (the pool's high-water mark)

    def stage(self, tensor: torch.Tensor, sent_ms: float, mb: int) -> Staged:
        """Takes a buffer, writes the header and starts the payload's copy; returns at once."""
        check_payload(tensor, mb, self.spec)
        with self._lock:
            buf = self._free.pop() if self._free else None
            if buf is None:
                self.allocated += 1
        if buf is None:
            buf = self.spec.empty("cpu", pin=self.copier.pin)
        buf[:HEADER_BYTES].copy_(header_bytes(sent_ms, mb))
        return Staged(buf, self.copier.copy(buf[HEADER_BYTES:], tensor))

    def release(self, staged: Staged) -> None:
        """Gives a sent message's buffer back to the pool."""
        with self._lock:
            self._free.append(staged.buf)

    def close(self) -> None:
        self.copier.close()


def make_staging(spec: MessageSpec, device: torch.device) -> HostStaging:
    """The staging for ``device``: pinned buffers and a copy stream on CUDA, else the CPU
    stand-in."""
    return HostStaging(spec, CudaCopier() if device.type == "cuda" else ThreadCopier())
