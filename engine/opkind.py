"""The op vocabulary: every kind of op the executor runs, the op log records and the
simulator times, in one enum (ARCHITECTURE.md "Op log").

- compute: ``F`` (forward), ``B`` (input-gradient backward), ``W`` (weight-gradient backward)
  and ``BW`` (1F1B's full, non-split backward); a schedule holds these only
  (``engine.planner.ir``);
- ``STEP``: the optimizer step that ends a stage's iteration (logged with micro-batch -1);
- p2p events: ``SEND_F``/``RECV_F`` carry activations to the next stage, ``SEND_B``/``RECV_B``
  gradients to the previous one.

No torch, no I/O: the planner, the engine and the figures all import it.
"""

from __future__ import annotations

from enum import Enum


class OpKind(str, Enum):
    """One kind of op; the value is its name in schedules (``F3``) and in op logs."""

    F = "F"
    B = "B"
    W = "W"
    BW = "BW"
    STEP = "STEP"
    SEND_F = "SEND_F"
    RECV_F = "RECV_F"
    SEND_B = "SEND_B"
    RECV_B = "RECV_B"
    # the end-of-iteration wait for the sends to complete: a profiler range, no op-log record
    DRAIN = "DRAIN"

    @property
    def is_compute(self) -> bool:
        """F, B, W or BW: the ops a schedule orders and the op log's busy time counts."""
        return self in _COMPUTE

    @property
    def is_backward(self) -> bool:
        """B or BW: the ops that take the gradient of the next stage."""
        return self is OpKind.B or self is OpKind.BW

    @property
    def is_comm(self) -> bool:
        """A p2p event (send or receive of either direction)."""
        return self in _DIRECTION

    @property
    def is_send(self) -> bool:
        return self is OpKind.SEND_F or self is OpKind.SEND_B

    @property
    def is_recv(self) -> bool:
        return self is OpKind.RECV_F or self is OpKind.RECV_B

    @property
    def direction(self) -> OpKind | None:
        """Whose data a p2p event carries: ``F`` (activations, stage s -> s+1) or ``B``
        (gradients, s+1 -> s); None for compute ops and STEP."""
        return _DIRECTION.get(self)

    @classmethod
    def send(cls, direction: str) -> OpKind:
        """``SEND_F`` or ``SEND_B`` for the direction ``"F"``/``"B"``."""
        return _p2p(_SENDS, direction)

    @classmethod
    def recv(cls, direction: str) -> OpKind:
        """``RECV_F`` or ``RECV_B`` for the direction ``"F"``/``"B"``."""
        return _p2p(_RECVS, direction)

    @classmethod
    def compute_kinds(cls) -> tuple[OpKind, ...]:
        """The kinds a schedule may hold: F, B, W, BW."""
        return (cls.F, cls.B, cls.W, cls.BW)


_COMPUTE = frozenset((OpKind.F, OpKind.B, OpKind.W, OpKind.BW))
_DIRECTION = {
    OpKind.SEND_F: OpKind.F, OpKind.RECV_F: OpKind.F,
    OpKind.SEND_B: OpKind.B, OpKind.RECV_B: OpKind.B,
}
_SENDS = {OpKind.F: OpKind.SEND_F, OpKind.B: OpKind.SEND_B}
_RECVS = {OpKind.F: OpKind.RECV_F, OpKind.B: OpKind.RECV_B}


def _p2p(table: dict[OpKind, OpKind], direction: str) -> OpKind:
    kind = table.get(OpKind(direction)) if direction in ("F", "B") else None
    if kind is None:
        raise ValueError(f"bad p2p direction {direction!r}: expected F or B")
    return kind
