"""The fault-aware PlanSource: the six methods' behaviour under slow and crashed links.

Two layers:
- ``engine.adapter.Adapter``: the pure decision (no torch, no Redis): which schedule,
  offload on/off, which delays the engine injects, this iteration.
- ``FaultPlanSource`` (here): the side effects. Rank 0 determines the fault in force (trace
  and/or control plane), publishes it atomically, and one collective hands it (and, with
  ``--detect``, every rank's link measurements) to all ranks, so they all switch together.
  A time-based trace is read on rank 0 alone, by its own clock from the start of the
  ``fault_at`` iteration: the broadcast makes every rank use that one snapshot per iteration.
  Every rank beats its heartbeat; ``finish`` reports a failure to the control plane.

A NIC crash (``ITER;;inf``) is a crash of every link: the inline path fails, delegates carry
all traffic, PipeMorph plans every link as a crashed one.

Offload follows the fault in force (the control plane announces it; offload turns on at
once). With ``--detect`` PipeMorph plans from the measured delays instead of the injected
ones; the injected value is only logged next to them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from engine.adapter import Adapter, Basis, matches, with_detection_log
from engine.detect import (
    LinkDetector,
    LinkSample,
    combine,
    detected_delays_s,
    local_samples,
)
from engine.errors import EngineConfigError
from engine.plan_source import (
    IterationPlan,
    LinkObservation,
    PlanContext,
    PlanSource,
)
from engine.planner.costs import StageCosts
from injector.control import ControlClient, ControlPlaneError
from injector.trace import HEALTHY, Fault, Trace


class FaultPlanSource:
    """Trace / control plane -> collective -> ``Adapter``; heartbeats and error reports."""

    def __init__(
        self,
        ctx: PlanContext,
        trace: Trace | None,
        control: ControlClient | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = ctx
        self.clock = clock  # seconds; rank 0 reads a time-based trace by it
        self.trace = trace
        self.control = control
        self.adapter = Adapter(ctx.method, ctx.num_stages, ctx.num_microbatches)
        self.detector = LinkDetector(ctx.num_stages - 1) if ctx.detect else None
        self._published_epoch: int | None = None
        self._origin: float | None = None  # rank 0's clock at the fault_at iteration (time trace)
        self._snapshot = HEALTHY  # the time trace's snapshot in force, since its first iteration
        self._trace_s: float | None = None  # seconds into the time trace at this plan
        self._known_s: tuple[float, ...] = (0.0,) * (ctx.num_stages - 1)
        self._basis = Basis(self._known_s, "injected")
        self._local: list[LinkSample] = []
        self._last_plan_t: float | None = None
        self._iteration = -1
        self._lag_epoch = -1  # the injected fault whose detection lag is being measured
        self._matched_at: int | None = None  # first iteration planned within tolerance of it

    # -- rank 0: the fault in force --------------------------------------------------------

    def _fault_in_force(self, iteration: int) -> Fault:
        fault = HEALTHY
        if self.trace is not None:
            fault = self._from_trace(iteration)
            if self.control is not None and fault.epoch != self._published_epoch:
                self.control.publish_fault(fault, published_by=self.ctx.rank)
                self._published_epoch = fault.epoch
        if self.control is not None:
            fault = self.control.read_fault() or fault  # an external writer may override
        return fault

    def _from_trace(self, iteration: int) -> Fault:
        """The trace's fault at ``iteration``; for a time-based trace, the snapshot in force
        by rank 0's clock, counted from the start of the ``fault_at`` iteration."""
        assert self.trace is not None
        if self.trace.kind == "iteration":
            return self.trace.fault_at(iteration)
        if iteration < self.ctx.fault_at:
            return HEALTHY
        now = self.clock()
        if self._origin is None:
            self._origin = now
        self._trace_s = now - self._origin
        snapshot = self.trace.snapshot_at(self._trace_s)
        if snapshot.epoch != self._snapshot.epoch:
            self._snapshot = replace(snapshot, since_iteration=iteration)
        return self._snapshot

    # -- the collective ----------------------------------------------------------------

    def _agree(self, fault: Fault | None) -> tuple[Fault, float | None, list[LinkSample]]:
        """Rank 0's fault (and time-trace seconds) on every rank, and with ``--detect``
        every rank's link samples."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return fault or HEALTHY, self._trace_s, list(self._local)
        mine = {"fault": fault.to_json(), "trace_s": self._trace_s} if fault is not None else None
        if self.detector is None:
            got = _broadcast_json(mine)
            return Fault.from_json(got["fault"]), got["trace_s"], []
        everyone: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, (mine, self._local))
        samples = [s for _, local in everyone for s in local]
        got = everyone[0][0]
        return Fault.from_json(got["fault"]), got["trace_s"], samples

    # -- the protocol ------------------------------------------------------------------

    def plan(self, iteration: int, profiled: StageCosts | None) -> IterationPlan:
        """Agrees the fault in force, updates the planning basis, decides, beats. The
        heartbeat's last iteration time is this rank's wall time between two ``plan`` calls."""
        now = time.monotonic()
        last_ms = None if self._last_plan_t is None else (now - self._last_plan_t) * 1000.0
        self._last_plan_t = now
        self._iteration = iteration
        fault = self._fault_in_force(iteration) if self.ctx.rank == 0 else None
        fault, trace_s, samples = self._agree(fault)
        self._local = []
        extra: dict[str, Any] = {}
        if trace_s is not None:
            extra["trace_s"] = round(trace_s, 4)  # rank 0's seconds into the time trace
        if self.detector is not None:
            extra.update(self._detect(iteration, fault, samples, profiled))
        else:
            self._basis = Basis(self._known_s, "injected")
        plan = self.adapter.plan(iteration, fault, self._basis, profiled, extra)
        # what the next iteration plans from: known now, acted on then (one-iteration lag)
        self._known_s = fault.link_delays_s(self.ctx.num_stages)
        self._heartbeat(iteration, "iteration", last_ms, plan)
        return plan

    def _detect(
        self, iteration: int, fault: Fault, samples: list[LinkSample], profiled: StageCosts | None
    ) -> dict[str, Any]:
        """Updates the planning basis from the previous iteration's measurements."""
        assert self.detector is not None
        pooled = combine(samples, self.ctx.num_stages - 1)
        tf = min(profiled.tf) if profiled is not None else None
        verdict = self.detector.update(iteration - 1, pooled, tf)
        delays = detected_delays_s(verdict, self._basis.delays_s)
        changed = delays != self._basis.delays_s
        self._basis = Basis(delays, "detected")
        if changed and self.control is not None and self.ctx.rank == 0:
            self.control.publish_detected(
                self._as_fault(delays, iteration),
                iteration=iteration,
                link_excess_ms=[-1.0 if e is None else e for e in verdict.raw_excess_ms],
            )
        if fault.epoch != self._lag_epoch:
            self._lag_epoch, self._matched_at = fault.epoch, None
        if self._matched_at is None and matches(fault, delays, self.ctx.num_stages):
            self._matched_at = iteration
        baseline = verdict.baseline_ms
        detection = {
            "from_iteration": iteration - 1,
            "excess_ms": [None if e is None else round(e, 3) for e in verdict.raw_excess_ms],
            "slow_links": list(verdict.slow_links),
            "baseline_ms": None if math.isinf(baseline) else round(baseline, 3),
        }
        return with_detection_log(fault, self._basis, detection, self._matched_at)

    def _as_fault(self, delays_s: tuple[float, ...], iteration: int) -> Fault:
        slow = [(i, d) for i, d in enumerate(delays_s) if d > 0]
        links = tuple((i, i + 1) for i, _ in slow)
        return Fault(links, tuple(d for _, d in slow), since_iteration=iteration)

    def observe(self, observations: list[LinkObservation]) -> None:
        """Keeps this rank's summary of the iteration's transits for the next ``plan``."""
        if self.detector is not None:
            self._local = local_samples(observations)

    def finish(self, error: str | None) -> None:
        """Reports a failure (and the final phase) to the control plane."""
        if self.control is None:
            return
        try:
            if error is not None:
                self.control.report_error(self.ctx.rank, error)
            self._heartbeat(self._iteration, "failed" if error else "done", None, None)
        finally:
            self.control.close()

    def _heartbeat(
        self, iteration: int, phase: str, last_ms: float | None, plan: IterationPlan | None
    ) -> None:
        if self.control is None:
            return
        extra: dict[str, Any] = {"method": self.ctx.method.id}
        if plan is not None:
            extra["offload"] = plan.offload
            extra["warmup"] = plan.schedule.warmup()
        self.control.heartbeat(self.ctx.rank, iteration, phase, last_ms, **extra)


def _broadcast_json(payload: dict[str, Any] | None) -> dict[str, Any]:
    """Rank 0's ``payload`` on every rank: its JSON bytes' length, then the bytes (uint8),
    two broadcasts on the main group (CPU tensors: gloo in either backend)."""
    import torch
    import torch.distributed as dist

    data = b""
    if dist.get_rank() == 0:
        data = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("utf-8")
    size = torch.tensor([len(data)], dtype=torch.int64)
    dist.broadcast(size, src=0)
    buf = torch.empty(int(size.item()), dtype=torch.uint8)
    if data:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buf, src=0)
    return json.loads(bytes(buf.tolist()).decode("utf-8"))


def make_plan_source(ctx: PlanContext) -> PlanSource:
    """The fault-aware plan source for ``ctx`` (its trace and/or control plane, detection).

    A control plane that is unreachable or refuses the password raises ``EngineConfigError``
    with the one-line reason, before the first iteration."""
    control = None
    if ctx.control_url:
        try:
            control = ControlClient(ctx.control_url, ctx.run_id)
            control.ping()
        except ControlPlaneError as exc:
            raise EngineConfigError(str(exc)) from None
    return FaultPlanSource(ctx, ctx.trace, control)
