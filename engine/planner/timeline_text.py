"""A compact terminal timeline: one row of characters per stage, one column per time slice.

A column shows the op running at the middle of its slice: ``F``/``B``/``W`` (``X`` for 1F1B's
BW), upper case for even micro-batches and lower case for odd ones so neighbours stay apart,
``.`` when the stage is idle. Pure text; the CLI adds colour with ``STYLES``.
"""

from __future__ import annotations

from engine.planner.ir import OpKind
from engine.planner.simulate import TimedOp

_CHAR = {OpKind.F: "F", OpKind.B: "B", OpKind.W: "W", OpKind.BW: "X"}

# rich styles per character (upper and lower case share one).
STYLES = {"F": "bold blue", "B": "bold green", "W": "yellow", "X": "bold magenta", ".": "dim"}


def timeline_rows(
    ops: list[TimedOp], num_stages: int, iteration_time: float, width: int = 80
) -> list[str]:
    """Per stage, a ``width``-character row of the timeline from 0 to ``iteration_time``."""
    if iteration_time <= 0 or width < 1:
        return ["" for _ in range(num_stages)]
    by_stage: list[list[TimedOp]] = [[] for _ in range(num_stages)]
    for t in ops:
        by_stage[t.stage].append(t)
    rows = []
    step = iteration_time / width
    for stage_ops in by_stage:
        stage_ops.sort(key=lambda t: t.start)
        chars, i = [], 0
        for col in range(width):
            mid = (col + 0.5) * step
            while i < len(stage_ops) and stage_ops[i].end <= mid:
                i += 1
            if i < len(stage_ops) and stage_ops[i].start <= mid:
                op = stage_ops[i].op
                c = _CHAR[op.kind]
                chars.append(c if op.mb % 2 == 0 else c.lower())
            else:
                chars.append(".")
        rows.append("".join(chars))
    return rows
