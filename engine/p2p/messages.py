"""The wire format shared by both p2p paths: one uint8 buffer = a 16-byte header (float64
sender handover time in ms on the shared clock, float64 micro-batch) + the tensor's bytes.
Shapes and dtypes are fixed by the preset, so a receiver allocates the exact buffer."""

from __future__ import annotations

from dataclasses import dataclass

import torch

HEADER_BYTES = 16


@dataclass(frozen=True)
class MessageSpec:
    """The tensor every message between stages carries (activation or its gradient)."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def payload_bytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * torch.empty((), dtype=self.dtype).element_size()

    @property
    def nbytes(self) -> int:
        return HEADER_BYTES + self.payload_bytes

    def empty(self, device: torch.device | str = "cpu", pin: bool = False) -> torch.Tensor:
        """A receive buffer."""
        return torch.empty(self.nbytes, dtype=torch.uint8, device=device, pin_memory=pin)


@dataclass(frozen=True)
class Message:
    """A received message."""

    tensor: torch.Tensor
    sent_ms: float
    mb: int


def check_payload(tensor: torch.Tensor, mb: int, spec: MessageSpec) -> None:
    """Raises ValueError unless ``tensor`` is the agreed shape and dtype."""
    if tuple(tensor.shape) != spec.shape or tensor.dtype != spec.dtype:
        raise ValueError(
            f"message for micro-batch {mb} is {tuple(tensor.shape)} {tensor.dtype}, "
            f"agreed {spec.shape} {spec.dtype}"
        )


def header_bytes(sent_ms: float, mb: int) -> torch.Tensor:
    """The 16-byte header (host memory)."""
    return torch.tensor([sent_ms, float(mb)], dtype=torch.float64).view(torch.uint8)


def pack(tensor: torch.Tensor, sent_ms: float, mb: int, spec: MessageSpec) -> torch.Tensor:
    """Header + payload in one buffer on the tensor's device."""
    check_payload(tensor, mb, spec)
    buf = torch.empty(spec.nbytes, dtype=torch.uint8, device=tensor.device)
    buf[:HEADER_BYTES].copy_(header_bytes(sent_ms, mb))
    buf[HEADER_BYTES:].copy_(tensor.contiguous().view(-1).view(torch.uint8))
    return buf


def unpack(buf: torch.Tensor, spec: MessageSpec) -> Message:
    """The inverse of ``pack``; the tensor is a view of ``buf`` (no copy)."""
    header = buf[:HEADER_BYTES].cpu().view(torch.float64)
    payload = buf[HEADER_BYTES:].view(spec.dtype).view(spec.shape)
    return Message(payload, float(header[0]), int(header[1]))


def check_matched(msg: Message, mb: int, src: int, where: str) -> None:
    """Raises if the message that arrived is not the expected micro-batch: under NCCL's rules
    (no tags) a receive takes whatever its peer sent next, so an order mismatch between sender
    and receiver would silently swap micro-batches."""
    if msg.mb != mb:
        raise RuntimeError(f"p2p order mismatch on {where}: expected micro-batch {mb} from stage "
                           f"{src}, received micro-batch {msg.mb} (sender and receiver post in "
                           "different orders)")
