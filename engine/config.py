"""The engine's command line, parsed and validated into one typed config before anything
touches torch.distributed. Every mistake is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass

from engine.errors import EngineConfigError
from engine.healthy_plan import inject_delay_trace
from engine.methods import Method, UnknownMethodError, resolve_method
from engine.presets import PRESETS, Preset, get_preset, resolve_split
from injector.trace import Trace, TraceError, load_trace


@dataclass(frozen=True)
class TrainConfig:
    """Everything one stage process needs to know about the run."""

    preset: Preset
    method: Method
    microbatches: int
    iterations: int
    seed: int
    device: str
    out: str
    delegates: int  # requested; 0 = automatic
    trace: Trace | None  # from --trace, or the one-line trace of --inject-delay
    control: str | None
    run_id: str
    detect: bool
    grad_clip: float | None
    split: tuple[int, ...]
    threads: int
    data: str | None
    lr: float
    timeout_s: float
    pace_ms: tuple[float, float, float] | None
    dtype: str
    world: int
    rank: int
    local_rank: int
    plan_script: str | None = None
    dump_grads: str | None = None
    fixed_data: bool = False
    crash_at: tuple[int, int] | None = None  # (stage, iteration)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as one line instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise EngineConfigError(message)


def _parser() -> _Parser:
    p = _Parser(prog="python -m engine.train",
                description="One pipeline stage of the PipeMorph engine (launch with torchrun).")
    hidden = argparse.SUPPRESS
    p.add_argument("--preset", default="cpu-small", help=", ".join(PRESETS))
    p.add_argument("--method", default="zb", help="1f1b, zb, pipemorph-cpu, pipemorph, all-cpu")
    p.add_argument("--microbatches", type=int, default=None)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--out", default="engine-out", help="directory of the stage<s>.jsonl op logs")
    p.add_argument("--delegates", type=int, default=0, help="workers per direction; 0 = auto")
    p.add_argument("--trace", default=None, help="fault trace file (ITER;LINKS;DELAY lines)")
    p.add_argument("--control", default=None, help="control plane URL redis://HOST:PORT")
    p.add_argument("--run-id", default="local")
    p.add_argument("--detect", action="store_true", help="detect slow links from transfers")
    p.add_argument("--grad-clip", type=float, default=None)
    p.add_argument("--split", default=None, help="layers per stage, e.g. 3,4,4,3")
    p.add_argument("--threads", type=int, default=None, help="torch threads per stage")
    p.add_argument("--data", default=None, help="text file used as byte-level tokens")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before a stuck "
                   "collective or p2p fails the run")
    p.add_argument("--pace", default="preset", help="'preset', 'off', or F,B,W target ms")
    p.add_argument("--dtype", default=None, help=hidden)
    p.add_argument("--plan-script", default=None, help=hidden)
    p.add_argument("--dump-grads", default=None, help=hidden)
    p.add_argument("--fixed-data", action="store_true", help=hidden)
    p.add_argument("--crash-at", default=None, help=hidden)
    p.add_argument("--inject-delay", default=None, help=hidden)
    return p


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise EngineConfigError(f"environment {name}={os.environ[name]!r} is not an integer")


def _pace(text: str, preset: Preset, device: str) -> tuple[float, float, float] | None:
    if device == "cuda" or text == "off":
        return None
    if text == "preset":
        return preset.pace_ms
    try:
        f, b, w = (float(x) for x in text.split(","))
    except ValueError:
        raise EngineConfigError(f"--pace {text!r}: use 'preset', 'off' or F,B,W in ms") from None
    if min(f, b, w) < 0:
        raise EngineConfigError(f"--pace {text!r}: targets must be >= 0")
    return (f, b, w)


def parse_config(argv: list[str] | None = None, cuda_available: bool = False) -> TrainConfig:
    """Parses and validates the command line (and torchrun's RANK/WORLD_SIZE)."""
    a = _parser().parse_args(argv)
    preset = get_preset(a.preset)
    try:
        method = resolve_method(a.method)
    except UnknownMethodError as exc:
        raise EngineConfigError(str(exc)) from None
    device = a.device or ("cuda" if cuda_available else "cpu")
    if device == "cuda" and not cuda_available:
        raise EngineConfigError("--device cuda: no CUDA device visible; use --device cpu")
    if preset.cuda_only and device != "cuda":
        raise EngineConfigError(
            f"preset {preset.name} is CUDA only (fp16, too large for CPU): use --device cuda "
            "on a GPU host, or the tiny / cpu-small presets")
    n = a.microbatches if a.microbatches is not None else preset.microbatches
    for name, val, low in (("--microbatches", n, 1), ("--iterations", a.iterations, 1),
                           ("--delegates", a.delegates, 0)):
        if val < low:
            raise EngineConfigError(f"{name} {val}: must be >= {low}")
    if a.delegates > 64:
        raise EngineConfigError(f"--delegates {a.delegates}: at most 64 workers per direction")
    if a.threads is not None and a.threads < 1:
        raise EngineConfigError(f"--threads {a.threads}: must be >= 1")
    if a.lr < 0 or not math.isfinite(a.lr):
        raise EngineConfigError(f"--lr {a.lr}: must be a finite number >= 0")
    if a.timeout <= 0:
        raise EngineConfigError(f"--timeout {a.timeout}: must be > 0 seconds")
    if a.grad_clip is not None and a.grad_clip <= 0:
        raise EngineConfigError(f"--grad-clip {a.grad_clip}: must be > 0")
    if a.trace is not None and not os.path.isfile(a.trace):
        raise EngineConfigError(f"--trace {a.trace}: no such file")
    if a.control is not None and not a.control.startswith(("redis://", "rediss://")):
        raise EngineConfigError(f"--control {a.control!r}: expected redis://HOST:PORT")
    if a.dtype is not None and a.dtype not in ("float32", "float64", "float16", "bfloat16"):
        raise EngineConfigError(f"--dtype {a.dtype!r}: use float32, float64, float16 or bfloat16")
    world = _env_int("WORLD_SIZE", 0)
    if world < 2:
        raise EngineConfigError(
            "WORLD_SIZE is not set or < 2: launch with torchrun --nproc-per-node S "
            "(S >= 2 stages) -m engine.train ...")
    split = resolve_split(preset, world, a.split)
    trace = None
    if a.trace is not None and a.inject_delay is not None:
        raise EngineConfigError("--trace and --inject-delay: give one of them")
    if a.trace is not None:
        try:
            trace = load_trace(a.trace, world)
        except TraceError as exc:
            raise EngineConfigError(f"--trace {exc}") from None
    elif a.inject_delay is not None:
        trace = inject_delay_trace(a.inject_delay, world)
    crash_at = None
    if a.crash_at is not None:
        try:
            stage, it = (int(x) for x in a.crash_at.split(":"))
        except ValueError:
            raise EngineConfigError(f"--crash-at {a.crash_at!r}: expected STAGE:ITER") from None
        crash_at = (stage, it)
    return TrainConfig(
        preset=preset, method=method, microbatches=n, iterations=a.iterations, seed=a.seed,
        device=device, out=a.out, delegates=a.delegates, trace=trace, control=a.control,
        run_id=a.run_id, detect=a.detect, grad_clip=a.grad_clip, split=split,
        threads=a.threads or (1 if device == "cpu" else 4), data=a.data, lr=a.lr,
        timeout_s=a.timeout, pace_ms=_pace(a.pace, preset, device),
        dtype=a.dtype or preset.dtype, world=world, rank=_env_int("RANK", 0),
        local_rank=_env_int("LOCAL_RANK", 0), plan_script=a.plan_script,
        dump_grads=a.dump_grads, fixed_data=a.fixed_data, crash_at=crash_at,
    )
