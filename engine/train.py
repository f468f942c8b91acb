"""Entry point of one pipeline stage: ``torchrun ... -m engine.train [options]`` (or
``python -m engine.forkrun ... -m engine.train``, which forks the stages from one import).

Sets up the process groups (main group, the inline path's per-link groups and the delegate
groups, created collectively in a fixed order; ``engine.p2p.groups``), the stage's model
slice, data, optimizer, p2p paths (posted natively or under NCCL's rules emulated,
``--p2p-semantics``) and plan source, then runs the executor. Any failure logs its traceback to stderr, tells the plan source, and exits the
process at once with status 1 so the launcher tears the other stages down promptly.

Before training, each stage writes ``stage<s>.facts.json`` beside its op log: the versions and
host facts it ran with (python, torch, CUDA, hostname, boot id ...), which pmctl puts in the
cell's ``cell.json``.
"""

from __future__ import annotations

import math
import os
import platform
import socket
import statistics
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from engine.clock import SharedClock, estimate_offsets
from engine.config import TrainConfig, parse_config
from engine.cuda_sleep import calibrate_cuda_sleep
from engine.data import load_data
from engine.errors import EngineConfigError
from engine.executor import Executor, ExecutorConfig

# Imported up front although healthy runs do not use it: under engine.forkrun the stages then
# share the import (redis-py, the planner) instead of each paying it at start-up.
from engine.fault_plan import make_plan_source as make_fault_source
from engine.healthy_plan import HealthyPlanSource
from engine.jsonio import write_json_atomic
from engine.memory_guard import check_stage_memory
from engine.model import DTYPES, StageModule
from engine.oplog import OpLogWriter, facts_path
from engine.optim import AdamW
from engine.p2p.batched import PairedP2P
from engine.p2p.delegates import DelegatePool
from engine.p2p.groups import delegate_channels, inline_channels
from engine.p2p.inline import InlineP2P
from engine.p2p.messages import MessageSpec
from engine.p2p.nccl_rules import NativeComm, make_comm
from engine.plan_source import PlanContext, PlanSource
from engine.stage import StageRunner
from engine.wgrad import WeightGradStore

MAX_AUTO_DELEGATES = 8
DEFAULT_DELEGATES = 4


def measure_forward_ms(module: StageModule, inp: torch.Tensor, rounds: int = 3) -> float:
    """Median wall time of this stage's forward (an estimate of tF before profiling)."""
    times = []
    with torch.no_grad():
        for _ in range(rounds):
            t = time.perf_counter()
            module(inp)
            if inp.is_cuda:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def delegate_count(cfg: TrainConfig, tf_ms: float) -> int:
    """Workers per direction: ``--delegates`` if given; none for methods that never offload;
    else enough to keep up with the largest known delay (ceil(delay / tF) + 1, capped)."""
    if cfg.delegates > 0:
        return cfg.delegates
    if cfg.method.offload == "never" and cfg.plan_script is None:
        return 0
    delay_s = cfg.trace.max_delay_s if cfg.trace is not None else 0.0
    if delay_s <= 0:
        return DEFAULT_DELEGATES
    return min(MAX_AUTO_DELEGATES, math.ceil(delay_s * 1000.0 / max(tf_ms, 1e-3)) + 1)


def make_plan_source(cfg: TrainConfig, delegates: int) -> PlanSource:
    """The healthy/scripted plan source, or the fault-aware one for a trace (--trace, or the
    spec's --links/--delay/--fault-at) or --control."""
    if cfg.plan_script is not None:
        from engine.scripted_plan import ScriptedPlanSource

        return ScriptedPlanSource(cfg.plan_script, cfg.world, cfg.microbatches)
    if cfg.trace is not None or cfg.control is not None:
        return make_fault_source(PlanContext(
            method=cfg.method, num_stages=cfg.world, num_microbatches=cfg.microbatches,
            rank=cfg.rank, delegates=delegates, trace=cfg.trace,
            control_url=cfg.control, run_id=cfg.run_id, detect=cfg.detect,
            fault_at=cfg.fault_at))
    return HealthyPlanSource(cfg.method, cfg.world, cfg.microbatches)


def _local_world() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def stage_facts(rank: int, world: int, device: torch.device, backend: str) -> dict:
    """What this stage ran with, for ``cell.json`` (cheap: no device queries on CPU)."""
    try:
        boot_id: str | None = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = None
    facts = {"stage": rank, "world": world, "python": platform.python_version(),
             "torch": torch.__version__, "cuda": torch.version.cuda, "hostname": socket.gethostname(),
             "boot_id": boot_id, "platform": platform.platform(), "device": device.type,
             "backend": backend}
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts


def run(cfg: TrainConfig, state: dict) -> None:
    """Builds everything on this rank and trains (``state`` keeps what the abort path needs)."""
    device = torch.device("cpu")
    if cfg.device == "cuda":
        device = torch.device("cuda", cfg.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    check_stage_memory(cfg, device, _local_world())  # before any peer waits on this stage
    torch.set_num_threads(cfg.threads)
    timeout = timedelta(seconds=cfg.timeout_s)
    # NCCL refuses several ranks on one GPU: stages sharing a GPU talk over gloo only
    shared_gpu = device.type == "cuda" and torch.cuda.device_count() < _local_world()
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" and not shared_gpu else "gloo"
    dist.init_process_group(backend, timeout=timeout)
    rank, world = dist.get_rank(), dist.get_world_size()
    write_json_atomic(facts_path(cfg.out, rank), {**stage_facts(rank, world, device, backend),
                                                  "p2p_semantics": cfg.p2p_semantics,
                                                  "p2p_pairing": cfg.p2p_pairing})
    p, dtype = cfg.preset, DTYPES[cfg.dtype]
    store = WeightGradStore()
    module = StageModule(p, cfg.split, rank, cfg.seed, store).to(device=device, dtype=dtype)
    runner = StageRunner(module, store, rank == 0, rank == world - 1, cfg.microbatches)
    data = load_data(p.vocab, p.seq, p.micro_batch, cfg.seed, cfg.data)
    spec = MessageSpec((p.micro_batch, p.seq, p.hidden), dtype)
    probe = (data.batch(0, 0)[0].to(device) if rank == 0 else
             torch.zeros(spec.shape, dtype=dtype, device=device))
    tf = torch.tensor([cfg.pace_ms[0] if cfg.pace_ms else measure_forward_ms(module, probe)],
                      dtype=torch.float64)
    dist.all_reduce(tf, op=dist.ReduceOp.MAX)
    k = delegate_count(cfg, float(tf[0]))
    offsets = estimate_offsets(rank, world)
    clock = SharedClock(offset_s=offsets[rank])
    # NCCL groups for the inline path where NCCL runs it: NCCL's own rules need no emulation
    nccl_inline = "nccl" in backend
    channels = inline_channels(world, timeout, "nccl" if nccl_inline else "gloo", cfg.p2p_groups)
    comm = make_comm(cfg.p2p_semantics, rank, cfg.p2p_watchdog_s)
    dchannels = delegate_channels(world, k, timeout) if k > 0 else {}
    delegates = DelegatePool(rank, world, k, spec, clock, device, dchannels, comm) if k > 0 else None
    state["delegates"] = delegates
    plan_source = make_plan_source(cfg, k)
    state["plan_source"] = plan_source
    writer = OpLogWriter(Path(cfg.out) / f"stage{rank}.jsonl", rank)
    state["writer"] = writer
    inline = InlineP2P(rank, spec, clock, device, channels,
                       NativeComm() if nccl_inline else comm,
                       calibrate_cuda_sleep() if device.type == "cuda" else 0.0, shared_gpu)
    ecfg = ExecutorConfig(
        rank=rank, world=world, num_microbatches=cfg.microbatches, device=device,
        pace_ms=cfg.pace_ms, grad_clip=cfg.grad_clip, fixed_data=cfg.fixed_data,
        dump_grads=Path(cfg.dump_grads) if cfg.dump_grads else None,
        crash_at=cfg.crash_at[1] if cfg.crash_at and cfg.crash_at[0] == rank else None,
        clock_offsets_ms=[o * 1000.0 for o in offsets])
    optimizer = AdamW(module.parameters(), lr=cfg.lr)
    paired = PairedP2P(inline) if cfg.p2p_pairing == "megatron" else None
    Executor(ecfg, runner, data, optimizer, writer, plan_source, inline, delegates,
             clock, paired=paired).run(cfg.iterations)
    plan_source.finish(None)
    dist.barrier()
    if delegates is not None:
        delegates.close()
    writer.close()
    dist.destroy_process_group()


def _abort(exc: BaseException, state: dict) -> None:
    """Logs, tells the plan source, and leaves at once (no hang in a dead collective)."""
    traceback.print_exc(file=sys.stderr)
    reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
    sys.stderr.write(f"engine: stage {os.environ.get('RANK', '?')} failed: {reason}\n")
    sys.stderr.flush()
    source = state.get("plan_source")
    if source is not None:
        try:
            source.finish(reason)
        except Exception:  # noqa: BLE001 - already failing: the first error is the one to report
            traceback.print_exc(file=sys.stderr)
    sys.stdout.flush()
    os._exit(1)


def main(argv: list[str] | None = None) -> None:
    """Parses options (exit 2 on a bad one), runs, exits non-zero on any failure and at once
    with status 0 on success."""
    try:
        cfg = parse_config(argv, cuda_available=torch.cuda.is_available())
    except EngineConfigError as exc:
        sys.stderr.write(f"engine: error: {exc}\n")
        sys.exit(2)
    state: dict = {}
    try:
        run(cfg, state)
    except EngineConfigError as exc:
        sys.stderr.write(f"engine: error: {exc}\n")
        sys.stderr.flush()
        os._exit(2)
    except BaseException as exc:  # noqa: BLE001 - every failure must end this stage now
        _abort(exc, state)
    # the logs are closed and the process group destroyed; interpreter shutdown with torch
    # loaded (module teardown, gloo threads) takes ~2 s on a busy host, paid by every run
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
