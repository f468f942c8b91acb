"""The five runtime methods (PAPER.md section 4): ids, labels, artifact aliases, behaviour.

Pure data, no torch: the CLI, the figures and the engine all read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """One runtime method: how p2p travels and whether the schedule adapts."""

    id: str
    label: str
    artifact_name: str
    offload: str  # "never" | "on-fault" | "always"
    adapts: bool  # re-plans with PipeMorph's rule when the fault changes
    split_backward: bool  # ZB-family B/W split; False = 1F1B full backward


METHODS: dict[str, Method] = {
    m.id: m
    for m in (
        Method("1f1b", "1F1B", "1F1B", "never", False, False),
        Method("zb", "ZB", "ZB", "never", False, True),
        Method("pipemorph-cpu", "PipeMorph-CPU", "ZB-CPU", "on-fault", False, True),
        Method("pipemorph", "PipeMorph", "ZB-CPU-ReSchedule", "on-fault", True, True),
        Method("all-cpu", "PipeMorph-All-CPU", "ALL-CPU", "always", False, True),
    )
}

_ALIASES = {m.artifact_name.lower(): m.id for m in METHODS.values()}
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
