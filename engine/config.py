"""The engine's command line, parsed and validated into one typed config before anything
touches torch.distributed. Every mistake is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, replace

from engine import cellspec
from engine.cellspec import CellSpec, SpecError
from engine.errors import EngineConfigError
from engine.methods import Method, resolve_method
from engine.p2p import LAYOUTS, PAIRINGS, SEMANTICS, Layout, Pairing, Semantics
from engine.presets import Preset, get_preset, resolve_split
from injector.trace import Trace, TraceError, load_trace, parse_trace, trace_hash

# The default of --p2p-semantics, so that pmctl can set it for every stage of a cell (it is
# not part of the cell's identity: it changes how p2p is posted, not what is computed).
P2P_SEMANTICS_ENV = "PMCTL_P2P_SEMANTICS"


@dataclass(frozen=True)
class TrainConfig:
    """Everything one stage process needs to know about the run: the cell's spec, and what
    follows from it (the preset, the method, the fault timeline) or only concerns this run."""

    spec: CellSpec
    preset: Preset
    method: Method
    out: str
    trace: Trace | None  # from --trace, or the one-line trace of --links/--delay/--fault-at
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
    rank: int
    local_rank: int
    plan_script: str | None = None
    dump_grads: str | None = None
    fixed_data: bool = False
    crash_at: tuple[int, int] | None = None  # (stage, iteration)
    p2p_semantics: Semantics = "native"
    p2p_watchdog_s: float = 30.0  # nccl semantics: no p2p progress this long = a deadlock
    p2p_groups: Layout = "link"
    p2p_pairing: Pairing = "early"

    # The spec's fields the engine reads everywhere, by their engine names.
    microbatches = property(lambda self: self.spec.microbatches)
    iterations = property(lambda self: self.spec.iterations)
    seed = property(lambda self: self.spec.seed)
    device = property(lambda self: self.spec.device)
    delegates = property(lambda self: self.spec.delegates)  # requested; 0 = automatic
    world = property(lambda self: self.spec.stages)
    fault_at = property(lambda self: self.spec.fault_at)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as one line instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise EngineConfigError(message)


def _parser() -> _Parser:
    p = _Parser(prog="python -m engine.train",
                description="One pipeline stage of the PipeMorph engine (launch with torchrun).")
    hidden = argparse.SUPPRESS
    cellspec.add_arguments(p)  # the cell's spec: one flag per CellSpec field
    p.add_argument("--out", default="engine-out", help="directory of the stage<s>.jsonl op logs")
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
    p.add_argument("--p2p-semantics", default=None, choices=SEMANTICS,
                   help="native: gloo's own p2p matching; nccl: emulate NCCL's rules (tags "
                   "ignored, issue order per communicator, one op at a time) so a plan that "
                   f"deadlocks on NCCL deadlocks here too (default: ${P2P_SEMANTICS_ENV}, else native)")
    p.add_argument("--p2p-watchdog", type=float, default=None, help="seconds without p2p "
                   "progress that --p2p-semantics nccl reports as a deadlock (default: half "
                   "of --timeout)")
    p.add_argument("--p2p-groups", default="link", choices=LAYOUTS, help=hidden)
    p.add_argument("--p2p-pairing", default="early", choices=PAIRINGS, help="1f1b's inline "
                   "p2p: early: every receive posted at the iteration start, sends waited on at "
                   "its end; megatron: each send posted with the next op's receive from the same "
                   "peer after the delay, waited on as a whole (engine.p2p.batched)")
    p.add_argument("--dtype", default=None, help=hidden)
    p.add_argument("--plan-script", default=None, help=hidden)
    p.add_argument("--dump-grads", default=None, help=hidden)
    p.add_argument("--fixed-data", action="store_true", help=hidden)
    p.add_argument("--crash-at", default=None, help=hidden)
    return p


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise EngineConfigError(f"environment {name}={os.environ[name]!r} is not an integer") from None


def _p2p_semantics(flag: str | None) -> Semantics:
    """--p2p-semantics, else the environment's default, else native."""
    if flag is not None:
        return flag  # type: ignore[return-value]
    value = os.environ.get(P2P_SEMANTICS_ENV, "").strip() or "native"
    if value not in SEMANTICS:
        raise EngineConfigError(f"environment {P2P_SEMANTICS_ENV}={value!r}: use one of "
                                f"{', '.join(SEMANTICS)} (or unset it)")
    return value  # type: ignore[return-value]


def _pace(spec: CellSpec, preset: Preset) -> tuple[float, float, float] | None:
    pace = cellspec.parse_pace(spec.pace)
    if spec.device == "cuda":
        return None
    return preset.pace_ms if pace == "preset" else pace  # type: ignore[return-value]


def _spec(a: argparse.Namespace, cuda_available: bool) -> CellSpec:
    """The cell's spec from the flags; what is not given comes from torchrun's environment
    (stages, stages per host), the preset (micro-batches), the device and the trace file."""
    world = _env_int("WORLD_SIZE", 0)
    if world < 2:
        raise EngineConfigError(
            "WORLD_SIZE is not set or < 2: launch with torchrun --nproc-per-node S "
            "(S >= 2 stages) -m engine.train ...")
    preset = get_preset(a.spec_preset or cellspec.field_default("preset"))
    defaults = {
        "stages": world, "stages_per_host": _env_int("LOCAL_WORLD_SIZE", 1),
        "microbatches": preset.microbatches, "device": "cuda" if cuda_available else "cpu",
    }
    trace_text = None
    if a.trace is not None:
        try:
            with open(a.trace, encoding="utf-8") as fh:
                trace_text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise EngineConfigError(f"--trace {a.trace}: cannot read it ({exc})") from None
        defaults["trace"] = trace_hash(trace_text)
    try:
        spec = cellspec.validate(cellspec.from_namespace(a, defaults))
    except SpecError as exc:
        raise EngineConfigError(str(exc)) from None
    if spec.stages != world:
        raise EngineConfigError(f"--stages {spec.stages} but WORLD_SIZE is {world}: launch "
                                f"{spec.stages} stage processes")
    if trace_text is not None and spec.trace != defaults["trace"]:
        raise EngineConfigError(f"--trace {a.trace}: its content hash is {defaults['trace']}, "
                                f"not the spec's {spec.trace} (the file changed)")
    if spec.trace and trace_text is None:
        raise EngineConfigError(f"--trace-hash {spec.trace}: give the trace file with --trace")
    if spec.device == "cuda" and not cuda_available:
        raise EngineConfigError("--device cuda: no CUDA device visible; use --device cpu")
    return replace(spec, trace_text=trace_text or "")


def _trace(spec: CellSpec, path: str | None) -> Trace | None:
    """The fault timeline: the trace file, or one line from the spec's links and delay."""
    try:
        if path is not None:
            return load_trace(path, spec.stages)
        return parse_trace(spec.fault_text(), spec.stages) if not spec.healthy else None
    except TraceError as exc:
        raise EngineConfigError(f"--trace {exc}") from None


def parse_config(argv: list[str] | None = None, cuda_available: bool = False) -> TrainConfig:
    """Parses and validates the command line (and torchrun's RANK/WORLD_SIZE)."""
    a = _parser().parse_args(argv)
    spec = _spec(a, cuda_available)
    preset = get_preset(spec.preset)
    if a.threads is not None and a.threads < 1:
        raise EngineConfigError(f"--threads {a.threads}: must be >= 1")
    if a.lr < 0 or not math.isfinite(a.lr):
        raise EngineConfigError(f"--lr {a.lr}: must be a finite number >= 0")
    if not 0 < a.timeout < math.inf:  # finite: a timedelta, and half of it is the watchdog's default
        raise EngineConfigError(f"--timeout {a.timeout}: must be a finite number of seconds > 0")
    if a.grad_clip is not None and a.grad_clip <= 0:
        raise EngineConfigError(f"--grad-clip {a.grad_clip}: must be > 0")
    if a.control is not None and not a.control.startswith(("redis://", "rediss://")):
        raise EngineConfigError(f"--control {a.control!r}: expected redis://HOST:PORT")
    if a.dtype is not None and a.dtype not in ("float32", "float64", "float16", "bfloat16"):
        raise EngineConfigError(f"--dtype {a.dtype!r}: use float32, float64, float16 or bfloat16")
    watchdog = a.timeout / 2.0 if a.p2p_watchdog is None else a.p2p_watchdog
    if not 0 < watchdog < math.inf:
        raise EngineConfigError(f"--p2p-watchdog {a.p2p_watchdog}: must be a finite number of seconds > 0")
    method = resolve_method(spec.method)
    if a.p2p_pairing == "megatron" and method.id != "1f1b":
        raise EngineConfigError(f"--p2p-pairing megatron: only 1f1b pairs its p2p as Megatron's "
                                f"1F1B does (method {method.id}); drop it or use --method 1f1b")
    crash_at = None
    if a.crash_at is not None:
        try:
            stage, it = (int(x) for x in a.crash_at.split(":"))
        except ValueError:
            raise EngineConfigError(f"--crash-at {a.crash_at!r}: expected STAGE:ITER") from None
        crash_at = (stage, it)
    return TrainConfig(
        spec=spec, preset=preset, method=method, out=a.out,
        trace=_trace(spec, a.trace), control=a.control, run_id=a.run_id, detect=a.detect,
        grad_clip=a.grad_clip, split=resolve_split(preset, spec.stages, a.split),
        threads=a.threads or (1 if spec.device == "cpu" else 4), data=a.data, lr=a.lr,
        timeout_s=a.timeout, pace_ms=_pace(spec, preset), dtype=a.dtype or preset.dtype,
        rank=_env_int("RANK", 0), local_rank=_env_int("LOCAL_RANK", 0),
        plan_script=a.plan_script, dump_grads=a.dump_grads, fixed_data=a.fixed_data,
        crash_at=crash_at, p2p_semantics=_p2p_semantics(a.p2p_semantics),
        p2p_watchdog_s=watchdog, p2p_groups=a.p2p_groups, p2p_pairing=a.p2p_pairing,
    )
