"""What the executor asks at every iteration start: which schedule, which p2p path, which
injected delays. Pure data + a Protocol, no torch.

The engine core ships the healthy implementation; the fault-aware one (trace / control plane,
the six methods' behaviour, PipeMorph's re-planning, detection) implements the same Protocol.
Every rank calls ``plan`` at the same iteration start and must get the same answer:
implementations agree through a collective on the main process group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.methods import Method
from engine.planner.costs import StageCosts
from engine.planner.ir import Schedule
from injector.trace import Trace


def log_ms(seconds: float) -> float | None:
    """Seconds as ms for the op log and the planner (3 decimals); ``inf`` (a crashed link)
    becomes None, as strict JSON has no infinity."""
    return None if math.isinf(seconds) else round(seconds * 1000.0, 3)


@dataclass(frozen=True)
class IterationPlan:
    """Everything that may change between iterations."""

    iteration: int
    schedule: Schedule
    offload: bool  # p2p through the delegate workers this iteration
    link_delays_s: tuple[float, ...]  # injected delay per link (len S-1); 0 healthy, inf crashed
    fault: dict[str, Any] = field(default_factory=dict)  # for the op log header
    planned_costs: StageCosts | None = None  # costs the planner used, for the op log header
    generator: str | None = None  # the planner generator of ``schedule`` (None: a script's)


@dataclass(frozen=True)
class LinkObservation:
    """One received message: which link, when the sender handed it over, when it arrived
    (both ms on the shared clock of the iteration)."""

    iteration: int
    link: int  # link i joins stage i and i+1
    direction: str  # "F" (i -> i+1) or "B" (i+1 -> i)
    mb: int
    sent_ms: float
    arrived_ms: float


class PlanSource(Protocol):
    """Decides each iteration's plan on every rank, identically."""

    def plan(self, iteration: int, profiled: StageCosts | None) -> IterationPlan:
        """Called by every rank at the start of ``iteration``, before the ranks agree the
        iteration's clock start (so a plan source's own collectives stay out of its time).
        ``profiled`` is the agreed per-stage median costs so far (None before any)."""
        ...

    def observe(self, observations: list[LinkObservation]) -> None:
        """This rank's received-message timings of the iteration that just ended."""
        ...

    def finish(self, error: str | None) -> None:
        """End of the run on this rank: ``error`` is None on success, else a one-line reason
        (e.g. a link-down error) to publish to the control plane."""
        ...


@dataclass(frozen=True)
class PlanContext:
    """What a plan source needs to know about the run (built by ``engine.train``)."""

    method: Method
    num_stages: int
    num_microbatches: int
    rank: int
    delegates: int  # pool size per direction the engine created (0 = p2p inline only)
    trace: Trace | None = None  # parsed once by engine.config
    control_url: str | None = None  # redis://HOST:PORT ; password from the environment
    run_id: str = "local"
    detect: bool = False
    fault_at: int = 0  # the cell's fault start: a time-based trace's seconds count from here
