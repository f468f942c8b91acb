"""The schedule IR: per stage, the ordered list of ops it executes in one iteration.

An op is a tiny immutable value (kind + micro-batch) whose text form is ``F3``/``B0``/``W7``/
``BW2`` and parses back from it. A schedule prints as one line of ops per stage, so it can be
read in a log, diffed in a test and pasted in an issue. Op kinds come from the vocabulary the
executor and the op log share (``engine.opkind``); a schedule holds its compute kinds only
(STEP and the p2p events are never schedule ops).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.opkind import OpKind

__all__ = ["Op", "OpKind", "Schedule", "ScheduleParseError"]

_SCHEDULE_KINDS = frozenset(OpKind.compute_kinds())
_OP_RE = re.compile(r"^(BW|F|B|W)(\d+)$")


class ScheduleParseError(ValueError):
    """A schedule's text form is malformed."""


@dataclass(frozen=True, order=True)
class Op:
    """One op of one stage: ``kind`` applied to micro-batch ``mb`` (0-based)."""

    kind: OpKind
    mb: int

    def __post_init__(self) -> None:
        if self.kind not in _SCHEDULE_KINDS:
            raise ScheduleParseError(f"{self.kind.value} is not a schedule op: expected F, B, W or BW")

    def __str__(self) -> str:
        return f"{self.kind.value}{self.mb}"

    @classmethod
    def parse(cls, text: str) -> Op:
        """Parses ``F3``-style text into an op."""
        m = _OP_RE.match(text.strip())
        if not m:
            raise ScheduleParseError(f"bad op {text!r}: expected F<n>, B<n>, W<n> or BW<n>")
        return cls(OpKind(m.group(1)), int(m.group(2)))


@dataclass(frozen=True)
class Schedule:
    """Per stage, the order of its ops for one iteration of ``num_microbatches``."""

    stages: tuple[tuple[Op, ...], ...]
    num_microbatches: int

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def split_backward(self) -> bool:
        """True for B/W-split schedules (ZB family), False for 1F1B-style full backwards."""
        return not any(op.kind is OpKind.BW for ops in self.stages for op in ops)

    def warmup(self) -> list[int]:
        """Forwards each stage issues before its first backward (B or BW)."""
        counts = []
        for ops in self.stages:
            n = 0
            for op in ops:
                if op.kind is not OpKind.F:
                    break
                n += 1
            counts.append(n)
        return counts

    def to_text(self) -> str:
        """One line per stage, ops separated by spaces."""
        return "\n".join(" ".join(str(op) for op in ops) for ops in self.stages)

    def to_lists(self) -> list[list[str]]:
        """Per stage, the op strings (the JSON form)."""
        return [[str(op) for op in ops] for ops in self.stages]

    @classmethod
    def from_lists(cls, lists: list[list[str]], num_microbatches: int | None = None) -> Schedule:
        """Builds a schedule from per-stage lists of op strings (inverse of ``to_lists``)."""
        stages = tuple(tuple(Op.parse(s) for s in ops) for ops in lists)
        if num_microbatches is None:
            num_microbatches = 1 + max((op.mb for ops in stages for op in ops), default=-1)
        return cls(stages, num_microbatches)

    @classmethod
    def from_text(cls, text: str, num_microbatches: int | None = None) -> Schedule:
        """Parses the ``to_text`` form (blank lines ignored)."""
        lines = [ln.split() for ln in text.strip().splitlines() if ln.strip()]
        return cls.from_lists(lines, num_microbatches)

    def __str__(self) -> str:
        return self.to_text()
