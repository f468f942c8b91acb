"""Our engine next to torch.distributed.pipelining's runtime, on the same plans and model.

    .venv/bin/python bench/bench_peer.py [--preset cpu-small] [--stages 4] [--methods 1f1b,zb]
        [--warmup 2] [--iters 8] [--dtype float64] [--fixed-data] [--json] [--keep DIR]

One job of S gloo processes (this script imports torch once and forks them through
``engine.forkrun``, each running ``bench.bench_peer``'s worker), pacing off, one torch thread each.
For each method (1F1B and ZB: their healthy plans) every process holds two copies of its stage
(``engine.model.StageModule``, same seed, so identical weights) and two AdamW optimizers
(``engine.optim``):

- **ours**: the engine's ``Executor`` as ``engine.train`` builds it (healthy plan source,
  inline p2p, op log, shared clock), one ``iteration(it)`` at a time;
- **torch**: ``torch.distributed.pipelining.PipelineStage`` wrapping the other copy, driven by
  ``_PipelineScheduleRuntime`` loaded with ``_load_csv`` from the same plan exported by
  ``engine.planner.export.to_torch_csv`` (torch adds the sends/receives itself). The stage gets
  a ``dw_builder`` over our ``WeightGradStore``, so its I / W / B actions compute exactly our
  B / W / BW (without it torch splits the backward by walking the autograd graph, which with our
  ``DeferredLinear`` runs each linear's whole backward twice, once in I and again in W); the
  loss function is ours (``engine.stage.lm_loss`` / N on the last stage, ``scale_grads=False``).

Both see the same micro-batches (``engine.data``: iteration ``it``'s, or iteration 0's with
``--fixed-data``). Iterations alternate which side runs first; each is timed from a barrier to
the last rank's end, optimizer step included (max over ranks). Printed per method: every
iteration's loss on both sides and their relative difference (agreement means < 1e-9 in
float64), the median iteration time after the warm-up on each side, the ratio ours / torch
(and the median of the per-iteration ratios), the CPU time of an iteration summed over the
ranks, and where the time goes: per rank the median compute time (F/B/W ops: our op log's
durations; torch's forward/backward/weight calls timed around the stage), the rest (waiting
on neighbours, p2p, the optimizer, the runtime itself), and the engine's work besides the ops
(its clock agreement, pre-posted receives, op log, cost agreement + iteration record,
optimizer step; the two collectives include waiting for slower ranks, so the rank that
finishes last shows their own cost). ``--json`` prints one JSON object instead. With the
4 processes on 2 shared cores the iterations are CPU-bound: compare the sides only within one
run. Asserts nothing (``tests/engine/test_peer_torch.py`` checks the loss agreement).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Imported here, at module level: engine.forkrun imports this module once and forks the
# workers from it, so they share one torch import instead of paying one each.
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.distributed.pipelining import PipelineStage  # noqa: E402
from torch.distributed.pipelining.schedules import _PipelineScheduleRuntime  # noqa: E402

from engine.clock import SharedClock, estimate_offsets  # noqa: E402
from engine.data import TokenData, load_data  # noqa: E402
from engine.executor import Executor, ExecutorConfig  # noqa: E402
from engine.healthy_plan import HealthyPlanSource  # noqa: E402
from engine.methods import resolve_method  # noqa: E402
from engine.model import DTYPES, StageModule  # noqa: E402
from engine.oplog import IterationRecord, OpLogWriter, OpRecord  # noqa: E402
from engine.optim import AdamW  # noqa: E402
from engine.p2p.groups import inline_channels  # noqa: E402
from engine.p2p.inline import InlineP2P  # noqa: E402
from engine.p2p.messages import MessageSpec  # noqa: E402
from engine.p2p.nccl_rules import NativeComm  # noqa: E402
from engine.planner.export import to_torch_csv  # noqa: E402
from engine.planner.ir import Schedule  # noqa: E402
from engine.presets import Preset, get_preset, resolve_split  # noqa: E402
from engine.stage import StageRunner, lm_loss  # noqa: E402
from engine.wgrad import WeightGradStore  # noqa: E402

# -- the launcher ------------------------------------------------------------------------


def _options(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--stages", type=int, default=4)
    ap.add_argument("--microbatches", type=int, default=None, help="default: the preset's")
    ap.add_argument("--methods", default="1f1b,zb", help="comma-separated: 1f1b, zb")
    ap.add_argument("--warmup", type=int, default=2, help="iterations left out of the times")
    ap.add_argument("--iters", type=int, default=8, help="timed iterations per side")
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--fixed-data", action="store_true", help="every iteration on iteration 0's data")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per collective / p2p")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--keep", type=Path, default=None, help="keep the op logs and CSVs here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(a: argparse.Namespace, argv: list[str]) -> int:
    """Forks the S workers from this process with engine.forkrun (torch is imported already);
    their output is this job's. Returns forkrun's exit status."""
    from engine import forkrun

    out = a.keep or Path(tempfile.mkdtemp(prefix="bench-peer-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        return forkrun.main(["--nnodes", "1", "--nproc-per-node", str(a.stages), "--master-port",
                             str(_free_port()), "-m", "bench.bench_peer", *argv, "--worker",
                             "--out", str(out)])
    finally:
        if a.keep is None:
            shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = _options(argv)
    if a.worker:
        worker(a)
        return
    status = launch(a, argv)
    sys.stdout.flush()
    os._exit(status)  # skips interpreter teardown with torch loaded (seconds of CPU)


# -- the workers ---------------------------------------------------------------------------


def worker(a: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=a.timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    preset = get_preset(a.preset)
    ctx = _Ctx(rank=rank, world=world, preset=preset, split=resolve_split(preset, world, None),
               dtype=DTYPES[a.dtype], n=a.microbatches or preset.microbatches, seed=a.seed,
               lr=a.lr, fixed=a.fixed_data, out=a.out,
               data=load_data(preset.vocab, preset.seq, preset.micro_batch, a.seed),
               offsets=estimate_offsets(rank, world))
    report = {"preset": a.preset, "stages": world, "microbatches": ctx.n, "dtype": a.dtype,
              "warmup": a.warmup, "iters": a.iters, "fixed_data": a.fixed_data,
              "torch": torch.__version__, "methods": {}}
    for method in a.methods.split(","):
        report["methods"][method] = _compare(ctx, method.strip(), a.warmup, a.iters)
    if rank == world - 1:
        if a.json:
            sys.stdout.write(json.dumps(report) + "\n")
        else:
            _print(report)
        sys.stdout.flush()
    dist.barrier()
    dist.destroy_process_group()


@dataclass
class _Ctx:
    """What both sides of every method share on one rank."""

    rank: int
    world: int
    preset: Preset
    split: tuple[int, ...]
    dtype: torch.dtype
    n: int  # micro-batches
    seed: int
    lr: float
    fixed: bool  # every iteration on iteration 0's data
    out: Path
    data: TokenData
    offsets: list[float]


def _compare(ctx: _Ctx, method: str, warmup: int, iters: int) -> dict:
    """Both sides of one method, interleaved iteration by iteration."""
    ours = _EngineSide(ctx, method)
    theirs = _TorchSide(ctx, method, ours.schedule)
    times: dict[str, list[float]] = {"ours": [], "torch": []}
    compute: dict[str, list[float]] = {"ours": [], "torch": []}
    cpu_ms: dict[str, list[float]] = {"ours": [], "torch": []}  # summed over the ranks
    parts: dict[str, dict[str, list[float]]] = {"ours": {}, "torch": {}}  # label -> ms per iteration
    losses: dict[str, list[float | None]] = {"ours": [], "torch": []}
    for it in range(warmup + iters):
        sides = [("ours", ours), ("torch", theirs)]
        for name, side in sides if it % 2 == 0 else sides[::-1]:
            dist.barrier()
            c0, t0 = time.process_time(), time.perf_counter()
            loss, busy_ms = side.iteration(it)
            wall = torch.tensor([(time.perf_counter() - t0) * 1000.0], dtype=torch.float64)
            cpu = torch.tensor([(time.process_time() - c0) * 1000.0], dtype=torch.float64)
            dist.all_reduce(wall, op=dist.ReduceOp.MAX)
            dist.all_reduce(cpu, op=dist.ReduceOp.SUM)
            times[name].append(float(wall[0]))
            cpu_ms[name].append(float(cpu[0]))
            compute[name].append(busy_ms)
            losses[name].append(loss)
            if it >= warmup:
                for label, ms in side.parts.items():
                    parts[name].setdefault(label, []).append(ms)
    ours.close()
    res: dict = {"schedule_csv": theirs.csv_text, "sides": {}}
    for name in ("ours", "torch"):
        timed = times[name][warmup:]
        busy = torch.tensor([statistics.median(compute[name][warmup:] or [0.0])], dtype=torch.float64)
        per_rank = [torch.zeros_like(busy) for _ in range(ctx.world)]
        dist.all_gather(per_rank, busy)
        labels = sorted(parts[name])
        mine = torch.tensor([statistics.median(parts[name][k]) for k in labels], dtype=torch.float64)
        all_parts = [torch.zeros_like(mine) for _ in range(ctx.world)]
        dist.all_gather(all_parts, mine)
        res["sides"][name] = {
            "parts_ms_per_rank": {k: [round(float(t[i]), 2) for t in all_parts] for i, k in enumerate(labels)},
            "iteration_ms": times[name],
            "median_ms": statistics.median(timed) if timed else None,
            "cpu_ms": cpu_ms[name],
            "median_cpu_ms": statistics.median(cpu_ms[name][warmup:]) if timed else None,
            "compute_ms_per_rank": [round(float(t[0]), 2) for t in per_rank],
            "loss": losses[name],
        }
    if ours.engine_ms:
        res["sides"]["ours"]["engine_iteration_ms"] = ours.engine_ms
    a, b = res["sides"]["ours"]["median_ms"], res["sides"]["torch"]["median_ms"]
    res["ratio"] = a / b if a and b else None
    paired = [x / y for x, y in zip(times["ours"][warmup:], times["torch"][warmup:])]
    res["paired_ratio_median"] = statistics.median(paired) if paired else None
    diffs = [abs(x - y) / abs(y) for x, y in zip(losses["ours"], losses["torch"])
             if x is not None and y is not None]
    res["max_rel_loss_diff"] = max(diffs) if diffs else None
    return res


# (label, object, method) of the engine's per-iteration work outside the ops
ENGINE_PARTS = (
    ("clock agreement (all_reduce)", "clock", "sync"),
    ("pre-posting receives", "executor", "_prepost"),
    ("optimizer step", "executor", "_step"),
    ("op log of the ops", "executor", "_write_ops"),
    ("cost agreement (all_gather) + iteration record", "executor", "_finish_iteration"),
)


def _timed(acc: dict[str, float], label: str, fn):  # type: ignore[no-untyped-def]
    """``fn``, adding its wall time (ms) to ``acc[label]``."""
    def run(*args, **kw):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            acc[label] = acc.get(label, 0.0) + (time.perf_counter() - t0) * 1000.0
    return run


class _EngineSide:
    """Our engine's executor, built the way ``engine.train.run`` builds it (no delegates:
    the healthy 1F1B / ZB plans never offload)."""

    def __init__(self, ctx: _Ctx, method: str) -> None:
        r, p, cpu = ctx.rank, ctx.preset, torch.device("cpu")
        store = WeightGradStore()
        module = StageModule(p, ctx.split, r, ctx.seed, store).to(dtype=ctx.dtype)
        runner = StageRunner(module, store, r == 0, r == ctx.world - 1, ctx.n)
        plan_source = HealthyPlanSource(resolve_method(method), ctx.world, ctx.n)
        self.schedule = plan_source.healthy
        clock = SharedClock(offset_s=ctx.offsets[r])
        self.log = _CapturingLog(Path(ctx.out) / method / f"stage{r}.jsonl", r)
        inline = InlineP2P(r, MessageSpec((p.micro_batch, p.seq, p.hidden), ctx.dtype), clock, cpu,
                           inline_channels(ctx.world, None, "gloo", "link"), NativeComm())
        ecfg = ExecutorConfig(rank=r, world=ctx.world, num_microbatches=ctx.n, device=cpu,
                              pace_ms=None, fixed_data=ctx.fixed,
                              clock_offsets_ms=[o * 1000.0 for o in ctx.offsets])
        self.executor = ex = Executor(ecfg, runner, ctx.data, AdamW(module.parameters(), lr=ctx.lr),
                                      self.log, plan_source, inline, None, clock)
        self.engine_ms: list[float] = []
        # the executor's per-iteration work besides the ops, timed in place (instance
        # attributes shadow the methods; the executor is not changed)
        self.parts: dict[str, float] = {}
        for label, owner, attr in ENGINE_PARTS:
            obj = clock if owner == "clock" else ex
            setattr(obj, attr, _timed(self.parts, label, getattr(obj, attr)))

    def iteration(self, it: int) -> tuple[float | None, float]:
        """Runs one iteration: (the loss on the last stage, compute ms of this stage)."""
        self.parts.clear()
        with contextlib.redirect_stdout(io.StringIO()):  # its "iter I loss L" line
            self.executor.iteration(it)
        rec = self.log.iterations[-1]
        self.engine_ms.append(rec.iteration_ms)
        return rec.loss, self.log.busy_ms.pop(it, 0.0)

    def close(self) -> None:
        self.log.close()


class _CapturingLog(OpLogWriter):
    """The engine's op log, also keeping each iteration record and compute time in memory."""

    def __init__(self, path: Path, stage: int) -> None:
        super().__init__(path, stage)
        self.iterations: list[IterationRecord] = []
        self.busy_ms: dict[int, float] = {}

    def write(self, record: IterationRecord | OpRecord) -> None:  # type: ignore[override]
        if isinstance(record, IterationRecord):
            self.iterations.append(record)
        elif isinstance(record, OpRecord) and record.op.is_compute:
            self.busy_ms[record.iteration] = self.busy_ms.get(record.iteration, 0.0) + record.duration_ms
        super().write(record)


class _TorchSide:
    """torch's ``_PipelineScheduleRuntime`` running our exported plan on our stage module."""

    def __init__(self, ctx: _Ctx, method: str, schedule: Schedule) -> None:
        r, p, n = ctx.rank, ctx.preset, ctx.n
        self.ctx, self.last = ctx, r == ctx.world - 1
        store = WeightGradStore()
        store.begin(True)  # always deferring: each backward's W work is filed by dw_builder
        keys = itertools.count()

        def dw_builder():  # type: ignore[no-untyped-def]
            """Called right after each backward: files its stashed W work; I runs it later
            (W action), a full backward B at once."""
            key = next(keys)
            store.end(key)
            store.begin(True)
            return lambda: store.run(key)

        self.module = StageModule(p, ctx.split, r, ctx.seed, store).to(dtype=ctx.dtype)
        mb = (p.micro_batch, p.seq)
        act = torch.empty(*mb, p.hidden, dtype=ctx.dtype)
        inp = torch.zeros(mb, dtype=torch.long) if r == 0 else act.clone().requires_grad_(True)
        out = torch.empty(*mb, p.vocab, dtype=ctx.dtype) if self.last else act.clone().requires_grad_(True)
        self.stage = PipelineStage(self.module, r, ctx.world, torch.device("cpu"),
                                   input_args=inp, output_args=out, dw_builder=dw_builder)
        self.parts: dict[str, float] = {}
        for name in ("forward_one_chunk", "backward_one_chunk", "backward_weight_one_chunk"):
            setattr(self.stage, name, _timed(self.parts, "compute", getattr(self.stage, name)))

        def loss_fn(logits, targets):  # type: ignore[no-untyped-def]
            return lm_loss(logits, targets) / n  # the engine's loss: mean over N micro-batches

        self.schedule = _PipelineScheduleRuntime([self.stage], n, loss_fn=loss_fn, scale_grads=False)
        self.csv_text = to_torch_csv(schedule)
        path = Path(ctx.out) / method / f"plan-rank{r}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.csv_text, encoding="utf-8")
        self.schedule._load_csv(str(path))
        self.optimizer = AdamW(self.module.parameters(), lr=ctx.lr)

    def iteration(self, it: int) -> tuple[float | None, float]:
        ctx = self.ctx
        self.parts.clear()
        losses: list = []
        if ctx.rank == 0 or self.last:
            d_it = 0 if ctx.fixed else it
            batches = [ctx.data.batch(d_it, mb) for mb in range(ctx.n)]
        if ctx.rank == 0:
            self.schedule.step(torch.cat([b[0] for b in batches]), return_outputs=False)
        elif self.last:
            self.schedule.step(target=torch.cat([b[1] for b in batches]), losses=losses,
                               return_outputs=False)
        else:
            self.schedule.step(return_outputs=False)
        t0 = time.perf_counter()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.parts["optimizer step"] = (time.perf_counter() - t0) * 1000.0
        loss = float(torch.stack([x.detach() for x in losses]).sum()) if self.last else None
        return loss, self.parts.pop("compute", 0.0)


# -- the report -----------------------------------------------------------------------------


def _print(report: dict) -> None:
    print(f"peer bench: preset {report['preset']}, {report['stages']} stages, "
          f"{report['microbatches']} micro-batches, {report['dtype']}, pace off, torch {report['torch']}, "
          f"{report['warmup']} warm-up + {report['iters']} timed iterations per side")
    for method, res in report["methods"].items():
        ours, theirs = res["sides"]["ours"], res["sides"]["torch"]
        print(f"\n== {method}")
        print(f"{'iter':>4} {'loss ours':>22} {'loss torch':>22} {'rel diff':>9} "
              f"{'ours ms':>8} {'torch ms':>8} {'ours cpu':>8} {'torch cpu':>9}")
        for i, (lo, lt) in enumerate(zip(ours["loss"], theirs["loss"])):
            rel = abs(lo - lt) / abs(lt) if lo is not None and lt is not None else float("nan")
            tag = " (warm-up)" if i < report["warmup"] else ""
            print(f"{i:>4} {lo!r:>22} {lt!r:>22} {rel:>9.1e} {ours['iteration_ms'][i]:>8.1f} "
                  f"{theirs['iteration_ms'][i]:>8.1f} {ours['cpu_ms'][i]:>8.0f} {theirs['cpu_ms'][i]:>9.0f}{tag}")
        agree = res["max_rel_loss_diff"] is not None and res["max_rel_loss_diff"] < 1e-9
        print(f"losses agree (max relative difference {res['max_rel_loss_diff']:.1e} < 1e-9): "
              f"{'yes' if agree else 'NO'}")
        if ours["median_ms"] is not None:
            print(f"median iteration: ours {ours['median_ms']:.1f} ms, torch {theirs['median_ms']:.1f} ms; "
                  f"ours / torch = {res['ratio']:.3f} (median of paired ratios "
                  f"{res['paired_ratio_median']:.3f})")
            print(f"CPU time per iteration, all ranks: ours {ours['median_cpu_ms']:.0f} ms, "
                  f"torch {theirs['median_cpu_ms']:.0f} ms (median)")
        for name, side in (("ours", ours), ("torch", theirs)):
            med = side["median_ms"] or 0.0
            busy = side["compute_ms_per_rank"]
            rest = ", ".join(f"{med - b:.0f}" for b in busy)
            print(f"  {name:<5} compute ms per rank {busy}; iteration minus compute per rank: {rest}")
            for label, per_rank in side["parts_ms_per_rank"].items():
                print(f"    {label}: {per_rank} ms per rank (median per iteration)")
        if "engine_iteration_ms" in ours:
            em = ours["engine_iteration_ms"][report["warmup"]:]
            if em:
                print(f"  ours, the engine's own iteration time (op log, origin to last end): "
                      f"median {statistics.median(em):.1f} ms")


if __name__ == "__main__":
    main()
