"""The schedule executor: walks this stage's op list each iteration, moving activations and
gradients over the iteration's p2p path, and ends with the optimizer step.

Per iteration: ask the plan source (every rank, same answer) -> agree the clock origin ->
pre-post the receives -> run the ops -> drain sends -> step -> write the op log -> report
link observations -> agree the profiled costs and the iteration time. With
``--p2p-pairing megatron`` (1F1B) nothing is pre-posted: after each op its send goes out with
the next op's receive as one exchange, waited on at once (``engine.p2p.batched``).

Each compute op, p2p wait and the step runs in a range named as the op log names it (``F3``,
``BW3``, ``SEND_F3``, ``RECV_B3``, ``STEP`` ...): a ``record_function`` while a torch profiler
runs (without one: < 1 us per op) and, on CUDA, an NVTX range (Nsight Systems).
"""

from __future__ import annotations

import math
import resource
import sys
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.autograd import _profiler_enabled
from torch.profiler import record_function

from engine.clock import CpuTimer, CudaTimer, SharedClock
from engine.data import TokenData
from engine.errors import InjectedCrash
from engine.opkind import OpKind
from engine.oplog import IterationRecord, OpLogWriter
from engine.optim import AdamW
from engine.p2p.batched import Exchange, PairedP2P, megatron_exchanges
from engine.p2p.delegates import DelegatePool
from engine.p2p.inline import InlineP2P, RecvEvent, SendEvent
from engine.plan_source import IterationPlan, LinkObservation, PlanSource, log_ms
from engine.planner.costs import StageCosts
from engine.planner.ir import Op
from engine.profiler import Profiler, costs_from
from engine.stage import StageRunner

_NO_RANGE = nullcontext()


@dataclass
class ExecutorConfig:
    """Run-wide settings the executor needs besides its collaborators."""

    rank: int
    world: int
    num_microbatches: int
    device: torch.device
    pace_ms: tuple[float, float, float] | None = None  # F, B, W targets; None = raw
    grad_clip: float | None = None
    fixed_data: bool = False  # every iteration trains on iteration 0's data (tests)
    dump_grads: Path | None = None  # save gradients before each step (tests)
    crash_at: int | None = None  # raise InjectedCrash at this iteration (tests)
    clock_offsets_ms: list[float] = field(default_factory=list)


@dataclass
class Executor:
    """Runs iterations on one stage."""

    cfg: ExecutorConfig
    runner: StageRunner
    data: TokenData
    optimizer: AdamW | torch.optim.Optimizer
    writer: OpLogWriter
    plan_source: PlanSource
    inline: InlineP2P
    delegates: DelegatePool | None
    clock: SharedClock
    profiler: Profiler = field(default_factory=Profiler)
    paired: PairedP2P | None = None  # --p2p-pairing megatron: inline p2p in Megatron's exchanges
    profiled: StageCosts | None = None
    _ops: list[tuple[OpKind, int, float, float] | tuple[OpKind, SendEvent]] = field(default_factory=list)
    _recvs: list[tuple[OpKind, RecvEvent, str]] = field(default_factory=list)
    _durations: dict[str, list[float]] = field(default_factory=dict)
    _exchanges: dict[int, Exchange] | None = None  # this iteration's, by op index (paired only)

    def run(self, iterations: int) -> None:
        """Trains for ``iterations`` iterations."""
        for it in range(iterations):
            self.iteration(it)

    # -- one iteration -------------------------------------------------------------------

    def iteration(self, it: int) -> None:
        cfg = self.cfg
        plan = self.plan_source.plan(it, self.profiled)
        self._check_plan(plan)
        if cfg.crash_at == it:
            raise InjectedCrash(f"crash injected on stage {cfg.rank} at iteration {it}")
        self.clock.sync()
        timer = CudaTimer(self.clock) if cfg.device.type == "cuda" else CpuTimer(self.clock)
        if isinstance(timer, CudaTimer):
            timer.start_iteration()
        path = "delegate" if plan.offload else "inline"
        ops = plan.schedule.stages[cfg.rank]
        self._exchanges = (megatron_exchanges(ops, cfg.rank, cfg.world)
                           if self.paired is not None and not plan.offload else None)
        self._prepost(plan)
        self._ops, self._recvs = [], []
        data_it = 0 if cfg.fixed_data else it
        for i, op in enumerate(ops):
            self._run_op(i, op, plan, data_it, timer)
        if self._exchanges is not None:
            assert self.paired is not None
            self.paired.check_drained()
        with self._range(OpKind.DRAIN):  # the wait for the iteration's sends to complete
            sends = self.delegates.drain() if self.delegates is not None and plan.offload else []
            self.inline.drain()
        self.runner.check_drained()
        loss = self.runner.take_loss()
        if cfg.dump_grads is not None:
            self._dump_grads(it, loss)
        t = timer.mark()
        with self._range(OpKind.STEP):
            self._step()
        self._ops.append((OpKind.STEP, -1, t, timer.mark()))
        if cfg.device.type == "cuda":
            torch.cuda.synchronize()
        last_end = self._write_ops(it, timer, path, sends, plan)
        self.plan_source.observe(self._observations(it))
        self._finish_iteration(it, plan, loss, last_end)

    def _check_plan(self, plan: IterationPlan) -> None:
        s = plan.schedule
        if s.num_stages != self.cfg.world or s.num_microbatches != self.cfg.num_microbatches:
            raise RuntimeError(
                f"plan for iteration {plan.iteration} has {s.num_stages} stages x "
                f"{s.num_microbatches} micro-batches; this run has {self.cfg.world} x "
                f"{self.cfg.num_microbatches}"
            )
        if plan.offload and self.delegates is None:
            raise RuntimeError(
                f"plan for iteration {plan.iteration} offloads p2p but this run created no "
                "delegate workers: pass --delegates K"
            )

    def _prepost(self, plan: IterationPlan) -> None:
        """Posts this iteration's receives on its path, in each sender's op order (none in
        Megatron's exchanges: each receive is posted when its exchange is)."""
        if self._exchanges is not None:
            return
        r, stages = self.cfg.rank, plan.schedule.stages
        wanted = []
        if r > 0:
            wanted.append((OpKind.F, r - 1, [o.mb for o in stages[r - 1] if o.kind is OpKind.F]))
        if r < self.cfg.world - 1:
            wanted.append((OpKind.B, r + 1, [o.mb for o in stages[r + 1] if o.kind.is_backward]))
        for direction, src, mbs in wanted:
            if plan.offload:
                assert self.delegates is not None
                self.delegates.prepost(direction.value, src, mbs)
            else:
                self.inline.prepost(src, mbs)

    # -- ops -----------------------------------------------------------------------------

    def _run_op(self, i: int, op: Op, plan: IterationPlan, data_it: int, timer: Any) -> None:
        r, last = self.cfg.rank, self.cfg.world - 1
        kind, mb = op.kind, op.mb
        if kind is OpKind.F:
            tokens, targets = self.data.batch(data_it, mb) if r in (0, last) else (None, None)
            inp = tokens.to(self.cfg.device) if r == 0 else self._recv(OpKind.F, r - 1, mb, plan)
            tgt = targets.to(self.cfg.device) if r == last else None
            with self._range(kind, mb):
                start = timer.mark()
                out = self.runner.forward(mb, inp, tgt)
                end = self._pace(kind, start, timer)
            self._ops.append((kind, mb, start, end))
            if out is not None:
                self._send(OpKind.F, out, r + 1, mb, plan, i)
        elif kind.is_backward:
            grad = self._recv(OpKind.B, r + 1, mb, plan) if r < last else None
            with self._range(kind, mb):
                start = timer.mark()
                if kind is OpKind.B:
                    g_in = self.runner.backward_input(mb, grad)
                else:
                    g_in = self.runner.backward_full(mb, grad)
                end = self._pace(kind, start, timer)
            self._ops.append((kind, mb, start, end))
            if g_in is not None:
                self._send(OpKind.B, g_in, r - 1, mb, plan, i)
        else:
            with self._range(kind, mb):
                start = timer.mark()
                self.runner.backward_weight(mb)
                end = self._pace(kind, start, timer)
            self._ops.append((kind, mb, start, end))

    def _pace(self, kind: OpKind, start: float, timer: Any) -> float:
        """Pads a CPU op to its target duration (see ``engine.presets``)."""
        pace = self.cfg.pace_ms
        if pace is not None and isinstance(timer, CpuTimer):
            f, b, w = pace
            target = {OpKind.F: f, OpKind.B: b, OpKind.W: w, OpKind.BW: b + w}[kind]
            remaining = target - (timer.mark() - start)
            if remaining > 0:
                time.sleep(remaining / 1000.0)
        return timer.mark()

    def _range(self, kind: OpKind, mb: int = -1) -> Any:
        """``with self._range(kind, mb):`` the op's profiler range while a profiler runs (a
        record_function costs ~6-10 us even without one), and its NVTX range on CUDA."""
        profiling, nvtx = _profiler_enabled(), self.cfg.device.type == "cuda"
        if not (profiling or nvtx):
            return _NO_RANGE
        name = f"{kind.value}{mb}" if mb >= 0 else kind.value
        if not nvtx:
            return record_function(name)
        ranges = ExitStack()
        ranges.enter_context(torch.cuda.nvtx.range(name))
        if profiling:
            ranges.enter_context(record_function(name))
        return ranges

    def _link_delay(self, plan: IterationPlan, peer: int) -> float:
        return plan.link_delays_s[min(self.cfg.rank, peer)] if plan.link_delays_s else 0.0

    def _send(self, direction: OpKind, tensor: torch.Tensor, dst: int, mb: int,
              plan: IterationPlan, index: int) -> None:
        """Sends op ``index``'s output: by a delegate, inline (waited on at the drain), or in
        Megatron's exchange after that op (waited on now, with its paired receive)."""
        delay, kind = self._link_delay(plan, dst), OpKind.send(direction)
        with self._range(kind, mb):
            if plan.offload:
                assert self.delegates is not None
                self.delegates.send(direction.value, tensor, dst, mb, delay)
                return
            if self._exchanges is not None:
                assert self.paired is not None
                ev = self.paired.exchange(self._exchanges[index], tensor, delay)
            else:
                ev = self.inline.send(tensor, dst, mb, delay)
        self._ops.append((kind, ev))

    def _recv(self, direction: OpKind, src: int, mb: int, plan: IterationPlan) -> torch.Tensor:
        with self._range(OpKind.recv(direction), mb):
            if plan.offload:
                assert self.delegates is not None
                msg, ev = self.delegates.recv(direction.value, mb)
                path = "delegate"
            else:
                paired = self.paired if self._exchanges is not None else None
                msg, ev = paired.recv(src, mb) if paired is not None else self.inline.recv(src, mb)
                path = "inline"
        self._recvs.append((direction, ev, path))
        return msg.tensor

    # -- end of iteration ----------------------------------------------------------------

    def _step(self) -> None:
        clip = self.cfg.grad_clip
        params = [p for p in self.runner.module.parameters() if p.grad is not None]
        if clip is not None and clip > 0:
            sq = torch.zeros(1, dtype=torch.float64)
            for p in params:
                sq += p.grad.detach().double().pow(2).sum().cpu()
            dist.all_reduce(sq)
            norm = math.sqrt(float(sq[0]))
            if norm > clip:
                for p in params:
                    p.grad.mul_(clip / (norm + 1e-6))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _dump_grads(self, it: int, loss: float | None) -> None:
        assert self.cfg.dump_grads is not None
        grads = {n: p.grad.detach().cpu().clone() for n, p in
                 self.runner.module.named_parameters() if p.grad is not None}
        self.cfg.dump_grads.mkdir(parents=True, exist_ok=True)
        torch.save({"grads": grads, "loss": loss},
                   self.cfg.dump_grads / f"it{it}_stage{self.cfg.rank}.pt")

    def _write_ops(self, it: int, timer: Any, path: str, sends: list[SendEvent],
                   plan: IterationPlan) -> float:
        """Writes this iteration's op records; returns the last end (ms)."""
        w, last_end = self.writer, 0.0
        durations: dict[str, list[float]] = {}
        for rec in self._ops:
            if len(rec) == 2:  # an inline send
                kind, ev = rec
                w.op(it, kind, ev.mb, ev.start_ms, ev.end_ms, "inline", peer=ev.dst,
                     delay_ms=log_ms(ev.delay_s))
                last_end = max(last_end, ev.end_ms)
                continue
            kind, mb, s, e = rec
            start, end = timer.resolve(s), timer.resolve(e)
            w.op(it, kind, mb, start, end, path)
            durations.setdefault(kind.value, []).append(end - start)
            last_end = max(last_end, end)
        for ev in sends:
            direction = OpKind.F if ev.dst > self.cfg.rank else OpKind.B
            w.op(it, OpKind.send(direction), ev.mb, ev.start_ms, ev.end_ms, "delegate",
                 peer=ev.dst, delay_ms=log_ms(ev.delay_s))
        for direction, ev, p in self._recvs:
            w.op(it, OpKind.recv(direction), ev.mb, ev.posted_ms, ev.arrived_ms, p, peer=ev.src,
                 delay_ms=log_ms(self._link_delay(plan, ev.src)), sent_ms=ev.sent_ms)
        self._durations = durations
        return last_end

    def _observations(self, it: int) -> list[LinkObservation]:
        r = self.cfg.rank
        return [LinkObservation(it, min(r, ev.src), d.value, ev.mb, ev.sent_ms, ev.arrived_ms)
                for d, ev, _p in self._recvs]

    def _finish_iteration(self, it: int, plan: IterationPlan, loss: float | None,
                          last_end: float) -> None:
        healthy = not any(plan.link_delays_s)
        if healthy:
            self.profiler.record_iteration(it, self._durations)
        rows = self.profiler.agree((*self.profiler.local_medians(), last_end), self.cfg.world)
        self.profiled = costs_from(rows)
        iter_ms = max(row[3] for row in rows)
        self.writer.write(IterationRecord(
            it,
            self.cfg.rank,
            schedule=plan.schedule.to_lists(),
            fault=plan.fault,
            generator=plan.generator,
            costs=plan.planned_costs.to_json() if plan.planned_costs else None,
            offload=plan.offload,
            link_delays_ms=[log_ms(d) for d in plan.link_delays_s],
            loss=loss,
            profiled=self.profiled.to_json() if self.profiled else None,
            iteration_ms=round(iter_ms, 4),
            pace_ms=list(self.cfg.pace_ms) if self.cfg.pace_ms else None,
            max_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
            clock_offsets_ms=self.cfg.clock_offsets_ms if it == 0 else None,
        ))
        if self.cfg.rank == self.cfg.world - 1:
            shown = "nan" if loss is None else f"{loss:.4f}"
            sys.stdout.write(f"iter {it} loss {shown} time_ms {iter_ms:.1f}\n")
            sys.stdout.flush()
