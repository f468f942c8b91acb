"""The runtime method registry (PAPER.md section 4): one table from method id to its label,
artifact alias, offload policy, healthy schedule, adapted-schedule generator, colour and
marker. Adding a method is one entry.

``pipemorph`` re-plans with the paper's rule (PAPER.md section 3: the adapted warm-up, then
the greedy policy); ``pipemorph+`` is ours: the same offload, re-planned with the improved
heuristic (``engine.planner.improve``), never slower than the rule under the planned delays.

Pure data, no torch: the CLI, the planner, the figures and the engine all read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Method:
    """One runtime method: how p2p travels and whether the schedule adapts."""

    id: str
    label: str
    artifact_name: str | None  # the artifact's spelling; None for a method it did not have
    offload: Literal["never", "on-fault", "always"]  # when p2p goes through the delegates
    healthy_schedule: str  # the planner generator of its healthy plan ("zb" | "1f1b")
    adapt_generator: str | None  # the generator it re-plans with under a fault; None: never
    color: str  # one colour and marker per method in every figure (Okabe-Ito palette)
    marker: str
    # its healthy plan holds at most this many x S micro-batches in flight per stage (None: no
    # cap): the artifact ran Megatron's zero-bubble scheduler with 2 x S, so the ZB family does
    healthy_cap_per_stage: int | None = None

    @property
    def adapts(self) -> bool:
        """Whether it re-plans when the fault changes."""
        return self.adapt_generator is not None

    def healthy_activation_cap(self, num_stages: int) -> int | None:
        """The activation cap of its healthy plan for ``num_stages`` stages (None: none)."""
        cap = self.healthy_cap_per_stage
        return None if cap is None else cap * num_stages

    @property
    def split_backward(self) -> bool:
        """ZB-family B/W split; False = 1F1B's full backward."""
        return self.healthy_schedule != "1f1b"


METHODS: dict[str, Method] = {
    m.id: m
    for m in (
        Method("1f1b", "1F1B", "1F1B", "never", "1f1b", None, "#E69F00", "s"),
        Method("zb", "ZB", "ZB", "never", "zb", None, "#0072B2", "o", 2),
        Method("pipemorph-cpu", "PipeMorph-CPU", "ZB-CPU", "on-fault", "zb", None, "#009E73", "^", 2),
        Method("pipemorph", "PipeMorph", "ZB-CPU-ReSchedule", "on-fault", "zb", "pipemorph", "#D55E00", "D", 2),
        Method("pipemorph+", "PipeMorph+ (ours)", None, "on-fault", "zb", "pipemorph+", "#000000", "P", 2),
        Method("all-cpu", "PipeMorph-All-CPU", "ALL-CPU", "always", "zb", None, "#CC79A7", "v", 2),
    )
}

_ALIASES = {m.artifact_name.lower(): m.id for m in METHODS.values() if m.artifact_name}
_ALIASES.update({m.label.lower(): m.id for m in METHODS.values()})


class UnknownMethodError(ValueError):
    """A method name that is neither an id nor an artifact alias."""


def resolve_method(name: str) -> Method:
    """Returns the method for an id or an artifact spelling (``ZB-CPU-ReSchedule``...)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        raise UnknownMethodError(
            f"unknown method {name!r}: use one of {', '.join(METHODS)}"
        )
    return METHODS[key]
