"""A cell's spec: everything that determines one measured run's result, as one typed value.

The same dataclass is the figure's and experiment file's cell, the identity of a stored result
(``spec_hash``), and the engine's command line: ``to_argv`` writes one flag per field and
``add_arguments`` / ``from_namespace`` read them back, all from the field table below, so
there is no second hand-written list. Pure Python (no torch): the controller, the figures and
the engine all read it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, Literal, get_args

from engine.methods import UnknownMethodError, resolve_method
from engine.presets import PRESETS
from injector.links import Link, LinkError, delay_text, links_key, parse_delay, parse_links, same_delay

Device = Literal["cpu", "cuda"]
Launcher = Literal["fork", "torchrun", "direct"]
DEVICES: tuple[str, ...] = get_args(Device)
LAUNCHERS: tuple[str, ...] = get_args(Launcher)

# The run shape. The artifact ran 15 iterations with the fault from iteration 7; a cell's value
# is the mean of its last 5 (PAPER.md section 5), and that needs less: profiling drops the
# warm-up iteration 0 and takes iteration 1, the fault starts at 2, PipeMorph re-plans one
# iteration later, so iterations 3-7 are all adapted ones.
FULL_ITERATIONS, FULL_FAULT_AT = 8, 2
MAX_DELEGATES = 64


class SpecError(ValueError):
    """A spec that cannot run: one line naming the field, what is wrong and the fix."""


def _flag(f: Any) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _links(text: str) -> tuple[Link, ...]:
    try:
        return parse_links(text)
    except LinkError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _delay(text: str) -> float:
    try:
        return parse_delay(text, default_unit="s")
    except LinkError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _spec(default: Any, help: str, parse: Callable[[str], Any] = str,
          show: Callable[[Any], str] = str, flag: str = "") -> Any:
    """A spec field: its default, its engine flag (``--field-name`` unless given) with its
    help, and how the value travels as text."""
    return field(default=default, metadata={"help": help, "parse": parse, "show": show, "flag": flag})


@dataclass(frozen=True)
class CellSpec:
    """One measured cell. ``figure`` is the figure or experiment the cell belongs to (its
    results folder); the fault is ``links`` + ``delay_s`` from iteration ``fault_at``, or a
    trace (``trace`` = its content hash; ``trace_text`` carries the text and is no part of
    the identity, the hash is)."""

    figure: str = _spec("", "figure or experiment the cell belongs to")
    method: str = _spec("zb", "1f1b, zb, pipemorph-cpu, pipemorph, all-cpu")
    links: tuple[Link, ...] = _spec((), "slow links, e.g. 2_3 or 0_1,2_3 ('none')", _links, links_key)
    delay_s: float = _spec(0.0, "delay per message on the slow links, seconds or 'inf'", _delay, delay_text, "--delay")
    trace: str = _spec("", "content hash of the --trace file ('' = none)", flag="--trace-hash")
    stages: int = _spec(4, "pipeline stages (= WORLD_SIZE)", _int)
    # The inventory's layout (gpus = N per host); the local cluster's one launcher starts all
    # of its "hosts" stages together, so the engine does not check it against LOCAL_WORLD_SIZE.
    stages_per_host: int = _spec(1, "stages on each host of the inventory", _int)
    preset: str = _spec("cpu-small", ", ".join(PRESETS))
    device: Device = _spec("cpu", "cpu (gloo) or cuda (NCCL)")
    microbatches: int = _spec(12, "micro-batches per iteration", _int)
    iterations: int = _spec(FULL_ITERATIONS, "iterations to train", _int)
    fault_at: int = _spec(FULL_FAULT_AT, "0-based iteration the fault starts (a time trace's origin)", _int)
    delegates: int = _spec(0, "delegate workers per direction; 0 = automatic", _int)
    pace: str = _spec("preset", "'preset', 'off', or F,B,W target ms of each op")
    launcher: Launcher = _spec("fork", "how the stages were started: fork, torchrun, direct")
    seed: int = _spec(0, "model and data seed", _int)
    trace_text: str = field(default="", compare=False, repr=False)

    # -- derived --------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """No fault at all: no trace, and no slow link (or a zero delay)."""
        return not self.trace and (not self.links or self.delay_s == 0)

    @property
    def crashed(self) -> bool:
        return math.isinf(self.delay_s) and bool(self.links)

    def fault_text(self) -> str:
        """The cell's fault as trace text: its trace file's, else the one artifact-compatible
        line ``FAULT_AT;LINKS;DELAY`` of its slow links; empty when healthy."""
        if self.trace_text or self.healthy:
            return self.trace_text
        return f"{self.fault_at};{links_key(self.links)};{delay_text(self.delay_s)}\n"

    def same_fault(self, other: CellSpec) -> bool:
        """The one rule for "under the same fault": both healthy, or the same trace, or the
        same links with the same delay."""
        if self.healthy and other.healthy:
            return True
        return (self.trace == other.trace and self.links == other.links
                and same_delay(self.delay_s, other.delay_s))

    def to_json(self) -> dict[str, Any]:
        """The identity fields as strict JSON (``cell.json``'s ``spec``)."""
        out = {f.name: getattr(self, f.name) for f in spec_fields()}
        out["links"] = links_key(self.links)
        out["delay_s"] = "inf" if math.isinf(self.delay_s) else self.delay_s
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellSpec:
        """Inverse of ``to_json`` (unknown keys are refused)."""
        known = {f.name: f for f in spec_fields()}
        extra = sorted(set(data) - set(known))
        if extra:
            raise SpecError(f"unknown spec field {extra[0]!r}")
        vals = dict(data)
        if "links" in vals:
            vals["links"] = parse_links(str(vals["links"]))
        if "delay_s" in vals:
            vals["delay_s"] = parse_delay(str(vals["delay_s"]), default_unit="s")
        return cls(**vals)

    @property
    def spec_hash(self) -> str:
        """The cell's identity: a result is reused only for exactly this spec."""
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def with_fault(self, figure: str, method: str, links: tuple[Link, ...] = (),
                   delay_s: float = 0.0) -> CellSpec:
        """This spec (used as a template) for one cell of a figure."""
        return replace(self, figure=figure, method=method, links=tuple(sorted(links)), delay_s=delay_s)

    # -- the engine's command line ---------------------------------------------------------

    def to_argv(self) -> list[str]:
        """One ``--flag value`` per identity field, in field order."""
        out: list[str] = []
        for f in spec_fields():
            out += [_flag(f), f.metadata["show"](getattr(self, f.name))]
        return out


def spec_fields() -> tuple[Any, ...]:
    """The identity fields (everything but ``trace_text``), in order."""
    return tuple(f for f in fields(CellSpec) if f.compare)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers every spec field as an option (default None: ``from_namespace`` fills it)."""
    for f in spec_fields():
        parser.add_argument(_flag(f), dest=f"spec_{f.name}", type=f.metadata["parse"],
                            default=None, help=f.metadata["help"])


def from_namespace(ns: argparse.Namespace, defaults: dict[str, Any]) -> CellSpec:
    """The spec an ``add_arguments`` parser read; a field not given takes ``defaults``'
    value, else the dataclass default."""
    vals: dict[str, Any] = {}
    for f in spec_fields():
        given = getattr(ns, f"spec_{f.name}")
        if given is not None:
            vals[f.name] = given
        elif f.name in defaults:
            vals[f.name] = defaults[f.name]
    return CellSpec(**vals)


def field_default(name: str) -> Any:
    """The dataclass default of spec field ``name``."""
    f = next(f for f in fields(CellSpec) if f.name == name)
    assert f.default is not MISSING
    return f.default


def parse_pace(text: str) -> tuple[float, float, float] | None | str:
    """``preset`` -> "preset"; ``off`` -> None; ``F,B,W`` -> three non-negative ms."""
    if text in ("preset", "off"):
        return None if text == "off" else "preset"
    try:
        f, b, w = (float(x) for x in text.split(","))
    except ValueError:
        raise SpecError(f"pace {text!r}: use 'preset', 'off' or F,B,W in ms") from None
    if min(f, b, w) < 0 or not all(map(math.isfinite, (f, b, w))):
        raise SpecError(f"pace {text!r}: targets must be finite and >= 0")
    return (f, b, w)


def validate(spec: CellSpec) -> CellSpec:
    """Checks the spec as a whole; raises ``SpecError`` with one line. Returns it."""
    try:
        resolve_method(spec.method)
    except UnknownMethodError as exc:
        raise SpecError(str(exc)) from None
    if spec.preset not in PRESETS:
        raise SpecError(f"unknown preset {spec.preset!r}: use one of {', '.join(PRESETS)}")
    preset = PRESETS[spec.preset]
    if spec.device not in DEVICES:
        raise SpecError(f"device {spec.device!r}: use one of {', '.join(DEVICES)}")
    if spec.launcher not in LAUNCHERS:
        raise SpecError(f"launcher {spec.launcher!r}: use one of {', '.join(LAUNCHERS)}")
    for name, low in (("stages", 2), ("stages_per_host", 1), ("microbatches", 1),
                      ("iterations", 1), ("fault_at", 0), ("delegates", 0), ("seed", 0)):
        if getattr(spec, name) < low:
            raise SpecError(f"{name} = {getattr(spec, name)}: must be >= {low}")
    if spec.stages % spec.stages_per_host:
        raise SpecError(f"{spec.stages} stages do not divide into hosts of {spec.stages_per_host}")
    if spec.delegates > MAX_DELEGATES:
        raise SpecError(f"delegates = {spec.delegates}: at most {MAX_DELEGATES} per direction")
    if preset.num_layers < spec.stages:
        roomy = [p.name for p in PRESETS.values() if p.num_layers >= spec.stages and not p.cuda_only]
        raise SpecError(
            f"preset {spec.preset} has {preset.num_layers} layers, fewer than {spec.stages} stages"
            + (f": use {' or '.join(roomy)}" if roomy else ": use fewer stages"))
    if preset.cuda_only and spec.device != "cuda":
        raise SpecError(f"preset {spec.preset} is CUDA only (fp16): use device cuda, or a CPU preset")
    for a, b in spec.links:
        if b >= spec.stages:
            raise SpecError(f"link {a}_{b} does not exist with {spec.stages} stages "
                            f"(links are 0_1 .. {spec.stages - 2}_{spec.stages - 1})")
    if spec.delay_s < 0 or math.isnan(spec.delay_s):
        raise SpecError(f"delay {spec.delay_s}: must be >= 0 seconds or inf")
    if spec.trace and spec.links:
        raise SpecError("a cell has either a trace or slow links, not both")
    if not spec.healthy and spec.fault_at >= spec.iterations:
        raise SpecError(f"fault at iteration {spec.fault_at} is outside 0..{spec.iterations - 1}: "
                        "choose an iteration below the iteration count")
    parse_pace(spec.pace)
    return spec
