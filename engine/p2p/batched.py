"""Megatron's 1F1B communication (``--p2p-pairing megatron``): after each compute op the stage
posts its send together with the receive the *next* op needs from the same neighbour, as one
exchange that it waits on as a whole, like Megatron-LM's ``send_forward_recv_backward`` and
``send_backward_recv_forward`` (one ``batch_isend_irecv``, every request waited on). A send
with no such receive (warm-up ``send_forward``, cool-down ``send_backward``) is posted alone
and waited on too; a receive not paired with a send is posted alone right before the op that
needs it (``recv_forward`` / ``recv_backward``). Nothing is posted early.

The injected delay of a slow link blocks the compute thread before the exchange is posted
(as inline: ``InlineP2P.post_send``), so the receive paired with a delayed send is posted only
after the delay: a delayed send also holds that receive, and the next op. Under NCCL's rules a
send completes only once its receive is posted, so an exchange also waits for the neighbour
to post its side (both sides post the pair in the same op order: no deadlock).

The exchanges travel on the inline path's link groups (one per link and direction): a pair
spans two communicators, so it is posted as two operations (torch's ``batch_isend_irecv``
wants one group) and waited on together, which is what Megatron's waits amount to.

``megatron_exchanges`` is the pure plan (which op's output goes with which receive); the
``PairedP2P`` runs it on an ``InlineP2P``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from engine.opkind import OpKind
from engine.p2p.inline import InlineP2P, RecvEvent, SendEvent
from engine.p2p.messages import Message
from engine.planner.ir import Op


@dataclass(frozen=True)
class Transfer:
    """One message of a stage: ``direction`` F (activation, to/from the next stage's side) or
    B (gradient), micro-batch ``mb``, exchanged with ``peer``."""

    direction: OpKind
    peer: int
    mb: int


@dataclass(frozen=True)
class Exchange:
    """What a stage posts right after one compute op, and then waits on as a whole."""

    send: Transfer
    recv: Transfer | None  # the next op's input from the same peer; None: the send alone


def op_input(op: Op, rank: int, world: int) -> Transfer | None:
    """The message ``op`` consumes (None: its input is local)."""
    if op.kind is OpKind.F and rank > 0:
        return Transfer(OpKind.F, rank - 1, op.mb)
    if op.kind.is_backward and rank < world - 1:
        return Transfer(OpKind.B, rank + 1, op.mb)
    return None


def op_output(op: Op, rank: int, world: int) -> Transfer | None:
    """The message ``op`` produces (None: nothing leaves the stage)."""
    if op.kind is OpKind.F and rank < world - 1:
        return Transfer(OpKind.F, rank + 1, op.mb)
    if op.kind.is_backward and rank > 0:
        return Transfer(OpKind.B, rank - 1, op.mb)
    return None


def megatron_exchanges(ops: tuple[Op, ...] | list[Op], rank: int, world: int) -> dict[int, Exchange]:
    """By op index: the exchange posted after that op. Its send is the op's output; its
    receive is the next op's input when that comes from the send's peer (F then BW: the
    activation out, the gradient in, both with stage r+1; BW then F: the gradient out, the
    activation in, with r-1), as Megatron pairs them in 1F1B's steady state."""
    plan: dict[int, Exchange] = {}
    for i, op in enumerate(ops):
        out = op_output(op, rank, world)
        if out is None:
            continue
        nxt = op_input(ops[i + 1], rank, world) if i + 1 < len(ops) else None
        plan[i] = Exchange(out, nxt if nxt is not None and nxt.peer == out.peer else None)
    return plan


@dataclass
class PairedP2P:
    """Runs Megatron's exchanges over an ``InlineP2P`` (its channels, comm and delay)."""

    inline: InlineP2P
    _received: dict[tuple[int, int], tuple[Message, RecvEvent]] = field(default_factory=dict)

    def exchange(self, ex: Exchange, tensor: torch.Tensor, delay_s: float) -> SendEvent:
        """Waits out the injected delay, posts ``ex``'s send and receive, waits on both. The
        send's event spans the delay to the exchange's end (the time it held the compute
        thread); the receive's spans its posting to that end."""
        s = ex.send
        handle, _buf, sent = self.inline.post_send(tensor, s.peer, s.mb, delay_s)
        if ex.recv is not None:
            r = ex.recv
            self.inline.prepost(r.peer, [r.mb])
            msg, got = self.inline.recv(r.peer, r.mb)
        handle.wait()
        end = self.inline.clock.now_ms()
        if ex.recv is not None:
            self._received[(r.peer, r.mb)] = (msg, replace(got, posted_ms=sent.end_ms, arrived_ms=end))
        return replace(sent, end_ms=end)

    def recv(self, src: int, mb: int) -> tuple[Message, RecvEvent]:
        """The message an earlier exchange received, else one received alone now."""
        got = self._received.pop((src, mb), None)
        return got if got is not None else self.inline.recv(src, mb)

    def check_drained(self) -> None:
        """Raises if a received message was never consumed (a plan/op order mismatch)."""
        if self._received:
            left = ", ".join(f"mb{mb} from {src}" for src, mb in sorted(self._received))
            self._received.clear()
            raise RuntimeError(f"paired p2p: received but never used: {left}")
