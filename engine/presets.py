"""Model presets: the GPT decoder's size, the micro-batch shape and how ops are paced.

``pace_ms`` (F, B, W target durations) emulates dedicated accelerators on a shared CPU: every
compute op is really computed, then padded by a sleep to its target duration. Four stage
processes share two cores here; without pacing an idle stage donates its core to a busy one,
so op times shrink exactly when a straggler creates bubbles and the paper's effect blurs.
Targets are chosen well above the worst contended compute time, so the pad always applies.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import EngineConfigError


@dataclass(frozen=True)
class Preset:
    """One model + micro-batch size."""

    name: str
    vocab: int
    hidden: int
    heads: int
    blocks: int  # transformer blocks; embedding and head count as two more layers
    seq: int
    micro_batch: int
    microbatches: int  # default micro-batches per iteration
    dtype: str  # "float32" | "float16" | "float64"
    cuda_only: bool = False
    pace_ms: tuple[float, float, float] | None = None  # F, B, W targets on CPU; None = raw
    default_split: tuple[int, ...] | None = None

    @property
    def num_layers(self) -> int:
        return self.blocks + 2


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("tiny", vocab=256, hidden=32, heads=2, blocks=14, seq=16, micro_batch=2,
               microbatches=8, dtype="float32"),
        Preset("cpu-small", vocab=256, hidden=256, heads=4, blocks=6, seq=128, micro_batch=1,
               microbatches=12, dtype="float32", pace_ms=(30.0, 36.0, 18.0)),
        Preset("gpu-mid", vocab=8192, hidden=1024, heads=16, blocks=8, seq=512, micro_batch=2,
               microbatches=12, dtype="float16", cuda_only=True),
        Preset("ae-7b", vocab=50304, hidden=4096, heads=32, blocks=12, seq=1024, micro_batch=1,
               microbatches=12, dtype="float16", cuda_only=True, default_split=(3, 4, 4, 3)),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``, or a one-line error listing the known ones."""
    if name not in PRESETS:
        raise EngineConfigError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}")
    return PRESETS[name]


def default_split(num_layers: int, num_stages: int) -> tuple[int, ...]:
    """Layers per stage: as even as possible, extra layers to the middle stages first
    (the artifact's 14 layers over 4 stages give 3/4/4/3)."""
    if num_layers < num_stages:
        raise EngineConfigError(
            f"{num_layers} layers cannot be split over {num_stages} stages: use fewer stages"
        )
    base, extra = divmod(num_layers, num_stages)
    counts = [base] * num_stages
    middle_first = sorted(range(num_stages), key=lambda s: (abs(s - (num_stages - 1) / 2), s))
    for s in middle_first[:extra]:
        counts[s] += 1
    return tuple(counts)


def resolve_split(preset: Preset, num_stages: int, text: str | None) -> tuple[int, ...]:
    """The layer split from ``--split a,b,c`` or the preset's default."""
    if text is None:
        if preset.default_split is not None and len(preset.default_split) == num_stages:
            return preset.default_split
        return default_split(preset.num_layers, num_stages)
    try:
        counts = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise EngineConfigError(f"--split {text!r}: expected comma-separated integers") from None
    if len(counts) != num_stages or any(c < 1 for c in counts) or sum(counts) != preset.num_layers:
        raise EngineConfigError(
            f"--split {text!r}: need {num_stages} positive counts summing to "
            f"{preset.num_layers} (the {preset.name} preset's layers incl. embedding and head)"
        )
    return counts
