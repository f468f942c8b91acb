"""How much device memory each pipeline stage needs, estimated from the preset alone (no torch,
no model built): the controller checks a cell against the GPUs of ``pmctl setup``'s fact sheet
before launch, and every CUDA stage checks itself before it builds its model
(``engine.memory_guard``). Both refuse a split that will not fit with one line.

Per stage, with P its parameters and e the bytes of the training dtype:

- weights P·e and gradients P·e;
- AdamW state (``engine.optim``): two moments in the parameter dtype, or for fp16/bf16 an fp32
  master copy and two fp32 moments (12 bytes per parameter); the step's transients (the fp32
  copy of half gradients, the foreach kernel's denominator) are held only while no activations
  are, so the peak is the larger of the two phases;
- activations: per micro-batch and block 16·b·t·h elements held from its F until its W (what
  autograd saves for the F; after the B the weight-gradient stash, inputs + output gradients
  of the four linears, is as large), embedding indices, and the head's saved norms and fp32
  log-softmax; times the micro-batches in flight at the peak of the engine's own healthy plan
  (``engine.healthy_plan``, the one rule; F run, W not: the planner's ``peak_activations``):
  1F1B S-s, the ZB family under its 2 x S activation cap up to N (13..15 at S=4, N=32) since
  its W's run late; plus one for the backward in progress, which holds its inputs and its
  stash at once;
- the inline receives posted at the iteration start (N messages from each neighbour);
- a fixed margin per process for the CUDA context, cuBLAS workspaces and NCCL buffers, and a
  share for the caching allocator's fragmentation.

Measured against ``torch.cuda.max_memory_allocated`` by ``bench/gpu_check.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.cellspec import CellSpec
from engine.healthy_plan import healthy_schedule
from engine.methods import resolve_method
from engine.planner.simulate import peak_activations
from engine.presets import Preset, get_preset, resolve_split

ELEMENT_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
HALF = ("float16", "bfloat16")
BLOCK_SAVED = 16  # b·t·h elements a block keeps per micro-batch between its F and its W
CONTEXT_BYTES = 768 * 2**20  # CUDA context + cuBLAS workspaces + NCCL buffers, per process
ALLOCATOR_SLACK = 0.10  # the caching allocator's fragmentation, on top of what is allocated
HEADER_ELEMENTS = 4  # a message's header (engine.p2p.messages), generously


@dataclass(frozen=True)
class StageMemory:
    """One stage's estimate, in bytes."""

    stage: int
    params: int
    depth: int  # micro-batches whose activations are held at the peak (in flight + 1)
    weights: int
    grads: int
    optimizer: int
    activations: int
    buffers: int
    transient: int  # the optimizer step's temporaries (no activations are held then)
    context: int

    @property
    def allocated(self) -> int:
        """What the stage allocates at its peak (comparable to ``max_memory_allocated``)."""
        steady = self.weights + self.grads + self.optimizer
        return steady + max(self.activations + self.buffers, self.transient)

    @property
    def total(self) -> int:
        """The device memory the stage needs: its peak, the allocator's slack and the context."""
        return int(self.allocated * (1 + ALLOCATOR_SLACK)) + self.context

    def describe(self) -> str:
        """``stage 1 21.3 GiB (weights 1.5 GiB, grads 1.5 GiB, optimizer 9.0 GiB, ...)``"""
        return (f"stage {self.stage} {format_bytes(self.total)} (weights "
                f"{format_bytes(self.weights)}, grads {format_bytes(self.grads)}, optimizer "
                f"{format_bytes(self.optimizer)}, activations of {self.depth} micro-batches "
                f"{format_bytes(self.activations)}, context {format_bytes(self.context)})")


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``48 MiB``, ``512 B``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if n < 10 * size else f"{n / size:.0f} {unit}"
    return f"{n:.0f} B"


def layer_params(p: Preset, index: int) -> int:
    """Parameters of global layer ``index`` (0 = embedding, last = head), as ``engine.model``
    builds them."""
    h = p.hidden
    if index == 0:
        return p.vocab * h + p.seq * h  # token + position embeddings
    if index == p.num_layers - 1:
        return 2 * h + h * p.vocab  # final norm + LM head (no bias)
    # two norms, qkv, proj, fc1, fc2 (weights and biases)
    return 4 * h + (h * 3 * h + 3 * h) + (h * h + h) + (h * 4 * h + 4 * h) + (4 * h * h + h)


def activation_bytes(p: Preset, layers: Sequence[int], dtype: str) -> int:
    """Bytes one micro-batch keeps on a stage holding ``layers`` from its F until its W."""
    e = ELEMENT_BYTES[dtype]
    bt = p.micro_batch * p.seq
    total = 0
    for i in layers:
        if i == 0:
            total += bt * 8  # the token ids (int64) the embedding's backward needs
        elif i == p.num_layers - 1:
            # the norm's input and output, and the loss's log-softmax (fp32 for half logits)
            total += 2 * bt * p.hidden * e + bt * p.vocab * (4 if dtype in HALF else e)
        else:
            total += BLOCK_SAVED * bt * p.hidden * e
    return total


def inflight_depth(method: str, stages: int, microbatches: int, faulted: bool) -> list[int]:
    """Per stage, the most micro-batches whose F has run and whose W has not, in the plan the
    engine runs healthy (with its activation cap). A method that re-plans under a fault may
    warm up to all N (the rule's cap; the re-plan is uncapped)."""
    m = resolve_method(method)
    if m.adapts and faulted:
        return [microbatches] * stages
    return peak_activations(healthy_schedule(m, stages, microbatches))


def estimate_stages(p: Preset, split: Sequence[int], dtype: str, method: str,
                    microbatches: int, faulted: bool, cuda: bool = True) -> list[StageMemory]:
    """Every stage's estimate for this preset, split (layers per stage) and schedule."""
    stages = len(split)
    e = ELEMENT_BYTES[dtype]
    state = 4 if dtype in HALF else e  # master weights and moments
    depths = inflight_depth(method, stages, microbatches, faulted)
    message = (p.micro_batch * p.seq * p.hidden + HEADER_ELEMENTS) * e
    out = []
    start = 0
    for s, count in enumerate(split):
        layers = range(start, start + count)
        start += count
        n = sum(layer_params(p, i) for i in layers)
        neighbours = (s > 0) + (s < stages - 1)
        depth = depths[s] + 1
        out.append(StageMemory(
            stage=s, params=n, depth=depth, weights=n * e, grads=n * e,
            optimizer=n * state * (3 if dtype in HALF else 2),
            activations=depth * activation_bytes(p, layers, dtype),
            buffers=neighbours * microbatches * message,
            # the step's fp32 copy of half gradients and the foreach kernel's denominator
            transient=n * state * (2 if dtype in HALF else 1),
            context=CONTEXT_BYTES if cuda else 0,
        ))
    return out


def estimate_cell(spec: CellSpec, split: Sequence[int] | None = None,
                  dtype: str | None = None) -> list[StageMemory]:
    """The estimate for a cell: its preset's default split and dtype unless given (the
    engine's ``--split`` / ``--dtype``)."""
    p = get_preset(spec.preset)
    return estimate_stages(p, tuple(split or resolve_split(p, spec.stages, None)),
                           dtype or p.dtype, spec.method, spec.microbatches, not spec.healthy,
                           cuda=spec.device == "cuda")


def gpu_groups(local_stages: int, devices: int) -> list[list[int]]:
    """Which local ranks share each device: rank r runs on device r mod ``devices`` (as
    ``engine.train`` picks it), so with fewer devices than stages several share one."""
    devices = max(devices, 1)
    return [[r for r in range(local_stages) if r % devices == d]
            for d in range(min(devices, local_stages))]


def over_budget(estimates: Sequence[StageMemory], device_bytes: int, device: str) -> str | None:
    """One line when the stages sharing ``device`` need more than its ``device_bytes``."""
    need = sum(m.total for m in estimates)
    if need <= device_bytes:
        return None
    who = "; ".join(m.describe() for m in estimates)
    return (f"{device} has {format_bytes(device_bytes)} but needs an estimated "
            f"{format_bytes(need)}: {who}")


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20,
          "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """``24GiB``, ``80 GB``, ``1.5TiB``, ``123456`` -> bytes; ValueError otherwise."""
    m = _SIZE.match(text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a memory size (e.g. 24GiB, 80GB, 1.5TiB)")
    return int(float(m.group(1)) * _UNITS[unit])
