"""The engine's p2p paths as a timing model: what one iteration of the real executor takes.

The ideal simulator (``replay``) lets a message arrive ``c`` after its op ended and never
blocks the sender. The engine (``engine.executor``, ``engine.p2p``) does something narrower,
and this model follows it message by message:

- **one compute thread per stage** runs the stage's op list in order; before an op that
  consumes a message it waits for the message's arrival (receives are pre-posted, so a
  message is usable as soon as it arrived), then pays ``gap_ms`` (dispatch, unpacking);
- **inline sends** (no offload) run on that thread: after the op it sleeps the link's delay,
  then posts the send (``send_ms``); the message arrives ``wire_ms`` after the post. So
  consecutive sends on a slow link serialise with the sender's compute: head-of-line
  blocking. A link that is down (``inf``) fails the inline path (``PlanningError``);
- **delegates** (offload): the thread hands the message over (``handover_ms``) and goes on;
  per direction K workers, micro-batch m on worker m mod K, each worker FIFO: it starts a
  message when it is free and the message was handed over, sleeps the delay (none on a
  down link: delegates are the surviving CPU path), sends (``delegate_ms``); the receiver can
  use it ``delegate_wire_ms`` after that. K workers keep K messages in flight;
- at the end each stage waits for its sends to complete (drain), then steps (``step_ms``);
  its compute thread starts at ``start_ms``. Iteration time = the latest step end.

Pure (no torch); times in ms. With every overhead 0 and no delay it is ``replay`` exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from engine.planner.costs import StageCosts
from engine.planner.errors import PlanningError
from engine.planner.ir import Op, OpKind, Schedule
from engine.planner.validate import check_structure

Path = Literal["inline", "delegate"]
PATHS: tuple[Path, ...] = ("inline", "delegate")


@dataclass(frozen=True)
class Overheads:
    """What the engine spends around its compute ops (ms): per stage, or one for all links."""

    gap_ms: tuple[float, ...]  # per stage: compute thread, before each op (dispatch, unpack)
    send_ms: tuple[float, ...]  # per stage: posting one inline send, besides the delay
    handover_ms: tuple[float, ...]  # per stage: handing one message to a delegate
    step_ms: tuple[float, ...]  # per stage: drain done -> optimizer step end
    start_ms: tuple[float, ...]  # per stage: when its compute thread starts the iteration
    wire_ms: float = 0.0  # inline: post -> usable by the receiver
    delegate_ms: float = 0.0  # delegate worker: busy per message besides the delay
    delegate_wire_ms: float = 0.0  # delegate send done -> usable by the receiver

    @classmethod
    def none(cls, num_stages: int) -> Overheads:
        """No overhead anywhere: the ideal simulator's timing."""
        zero = (0.0,) * num_stages
        return cls(zero, zero, zero, zero, zero)

    def check(self, num_stages: int) -> None:
        """Raises ``PlanningError`` unless every value is finite and >= 0, one per stage."""
        for name in ("gap_ms", "send_ms", "handover_ms", "step_ms", "start_ms"):
            values = getattr(self, name)
            if len(values) != num_stages:
                raise PlanningError(f"{name}: got {len(values)} values for {num_stages} stages")
            for v in values:
                if not (v >= 0 and math.isfinite(v)):
                    raise PlanningError(f"{name}: {v!r} must be finite and >= 0")
        for name in ("wire_ms", "delegate_ms", "delegate_wire_ms"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise PlanningError(f"{name}: {v!r} must be finite and >= 0")

    def to_json(self) -> dict[str, object]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class EngineCosts:
    """Compute costs per stage (``bw``: 1F1B's full backward, None = tb + tw) and overheads."""

    compute: StageCosts
    overheads: Overheads
    bw: tuple[float, ...] | None = None

    def op_cost(self, stage: int, kind: OpKind) -> float:
        c = self.compute
        if kind is OpKind.F:
            return c.tf[stage]
        if kind is OpKind.B:
            return c.tb[stage]
        if kind is OpKind.W:
            return c.tw[stage]
        return self.bw[stage] if self.bw is not None else c.tb[stage] + c.tw[stage]


@dataclass(frozen=True)
class EngineIteration:
    """One iteration as the engine runs it: its schedule, per-link delays (ms; inf = down),
    the p2p path and the delegate workers per direction (used on the delegate path); ``op_ms``
    gives ops their own costs (a logged iteration's durations) instead of the stage's."""

    schedule: Schedule
    delays_ms: tuple[float, ...]
    path: Path = "inline"
    delegates: int = 1
    op_ms: Mapping[tuple[int, str], float] | None = None  # (stage, ``F3``) -> its own cost


class TimedEvent(NamedTuple):
    """One modelled op or message: stage, what (``F3``, ``SEND_B3`` ...), start, end (ms).
    A send runs from its op's end to its arrival at the peer."""

    stage: int
    what: str
    start: float
    end: float


@dataclass(frozen=True)
class EngineResult:
    """The modelled iteration: its time, each stage's step end, and every op and message."""

    iteration_ms: float
    stage_end_ms: list[float]
    events: list[TimedEvent]


def _message(stage: int, kind: OpKind, num_stages: int) -> tuple[int, str] | None:
    """Where the output of ``kind`` on ``stage`` goes: (peer, direction) or None."""
    if kind is OpKind.F and stage < num_stages - 1:
        return stage + 1, "F"
    if kind.is_backward and stage > 0:
        return stage - 1, "B"
    return None


def _needs(stage: int, kind: OpKind, num_stages: int) -> str | None:
    """The direction of the message ``kind`` on ``stage`` consumes, or None."""
    if kind is OpKind.F and stage > 0:
        return "F"
    if kind.is_backward and stage < num_stages - 1:
        return "B"
    return None


def simulate_engine(it: EngineIteration, costs: EngineCosts) -> EngineResult:
    """Times one iteration on the engine's paths (module docstring). Raises ``PlanningError``
    for a bad schedule or inputs, an inline send on a down link, or a deadlock."""
    sched, S = it.schedule, it.schedule.num_stages
    check_structure(sched)
    costs.compute.check(S)
    costs.overheads.check(S)
    if len(it.delays_ms) != S - 1:
        raise PlanningError(f"delays: got {len(it.delays_ms)} for {S - 1} links")
    if it.path == "delegate" and it.delegates < 1:
        raise PlanningError(f"delegates: {it.delegates}: the delegate path needs K >= 1")
    oh = costs.overheads
    arrival: dict[tuple[int, str, int], float] = {}  # (receiver, direction, mb) -> usable at
    workers = {(s, d): [0.0] * max(1, it.delegates) for s in range(S) for d in ("F", "B")}
    ptr, free = [0] * S, list(oh.start_ms)
    sends_done = [0.0] * S
    events: list[TimedEvent] = []
    work, queued = list(range(S - 1, -1, -1)), [True] * S
    while work:
        s = work.pop()
        queued[s] = False
        ops, p, t = sched.stages[s], ptr[s], free[s]
        while p < len(ops):
            op = ops[p]
            wanted = _needs(s, op.kind, S)
            ready = arrival.get((s, wanted, op.mb)) if wanted else 0.0
            if ready is None:
                break
            start = max(t, ready) + oh.gap_ms[s]
            own = it.op_ms.get((s, str(op))) if it.op_ms is not None else None
            t = start + (costs.op_cost(s, op.kind) if own is None else own)
            events.append(TimedEvent(s, str(op), start, t))
            out = _message(s, op.kind, S)
            if out is not None:
                t = _send(it, oh, s, op, out, t, arrival, workers, sends_done, events)
            p += 1
        if p != ptr[s]:
            ptr[s], free[s] = p, t
            for nb in (s - 1, s + 1):
                if 0 <= nb < S and not queued[nb] and ptr[nb] < len(sched.stages[nb]):
                    queued[nb] = True
                    work.append(nb)
    stuck = [s for s in range(S) if ptr[s] < len(sched.stages[s])]
    if stuck:
        s = stuck[0]
        raise PlanningError(f"schedule deadlocks: stage {s} waits at {sched.stages[s][ptr[s]]} "
                            f"(position {ptr[s]})")
    ends = [max(free[s], sends_done[s]) + oh.step_ms[s] for s in range(S)]
    return EngineResult(max(ends, default=0.0), ends, events)


def _send(it: EngineIteration, oh: Overheads, s: int, op: Op, out: tuple[int, str], t: float,
          arrival: dict[tuple[int, str, int], float], workers: dict[tuple[int, str], list[float]],
          sends_done: list[float], events: list[TimedEvent]) -> float:
    """Sends ``op``'s output from stage ``s`` at ``t``; returns when the compute thread is
    free again and records the message's arrival."""
    peer, direction = out
    delay = it.delays_ms[min(s, peer)]
    if it.path == "inline":
        if math.isinf(delay):
            raise PlanningError(f"link {min(s, peer)}_{min(s, peer) + 1} is down: the inline "
                                f"path cannot send {op} from stage {s} (use delegates)")
        posted = t + delay + oh.send_ms[s]  # the compute thread sleeps the delay, then posts
        arrives = posted + oh.wire_ms
        thread_free = posted
    else:
        thread_free = t + oh.handover_ms[s]
        pool = workers[(s, direction)]
        w = op.mb % it.delegates
        begin = max(pool[w], t)
        pool[w] = begin + (0.0 if math.isinf(delay) else delay) + oh.delegate_ms
        arrives = pool[w] + oh.delegate_wire_ms
    arrival[(peer, direction, op.mb)] = arrives
    sends_done[s] = max(sends_done[s], arrives)
    events.append(TimedEvent(s, f"SEND_{direction}{op.mb}", t, arrives))
    return thread_free
