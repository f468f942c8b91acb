"""A schedule in the compute-only CSV action format of ``torch.distributed.pipelining``.

``_PipelineScheduleRuntime._load_csv(path)`` (format ``"compute_only"``, the default) reads one
row per rank; each cell is one action ``<stage><type><micro-batch>`` (``_Action.from_str``):
``F`` forward, ``I`` backward for the input gradient, ``W`` backward for the weight gradient,
``B`` a full (non-split) backward. Our IR maps one to one, stage s on rank s:

    ours   F3 -> 3F...   B3 -> sI3   W3 -> sW3   BW3 -> sB3      (s = the stage = the row)

so row s of the CSV is stage s's op order. Torch's loader then adds the communication itself
(``_add_send_recv``: a SEND after each F / I / B whose peer is on another rank, the matching
RECV on the peer) and a ``REDUCE_GRAD`` after each stage's last W / B; the file holds compute
actions only. ``from_torch_csv`` reads the format back (without torch).

Torch's runtime files each micro-batch's loss in the order the last stage runs its forwards
and looks it up by micro-batch index, so it needs the last stage's forwards in micro-batch
order; every generator here plans them so, and ``to_torch_csv`` refuses a schedule that does
not (``ExportError``). No torch import.
"""

from __future__ import annotations

import csv
import io
import re

from engine.planner.ir import Op, OpKind, Schedule

__all__ = ["ExportError", "from_torch_csv", "to_torch_actions", "to_torch_csv"]

# our op kind -> torch's _ComputationType value
TORCH_TYPE = {OpKind.F: "F", OpKind.B: "I", OpKind.W: "W", OpKind.BW: "B"}
_FROM_TORCH = {v: k for k, v in TORCH_TYPE.items()}
_CELL_RE = re.compile(r"^(\d+)([FIWB])(\d+)$")


class ExportError(ValueError):
    """A schedule torch's pipelining runtime cannot run, or a malformed action CSV."""


def to_torch_actions(schedule: Schedule) -> list[list[str]]:
    """Per rank (= stage), its actions as torch's ``_Action`` strings (``0F0``, ``2I5`` ...)."""
    _check_runnable(schedule)
    return [[f"{s}{TORCH_TYPE[op.kind]}{op.mb}" for op in ops]
            for s, ops in enumerate(schedule.stages)]


def to_torch_csv(schedule: Schedule) -> str:
    """The schedule as the compute-only CSV ``_PipelineScheduleRuntime._load_csv`` reads: one
    row per rank, stage s on rank s, rows ending with a newline."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for row in to_torch_actions(schedule):
        writer.writerow(row)
    return buf.getvalue()


def from_torch_csv(text: str, num_microbatches: int | None = None) -> Schedule:
    """Reads a compute-only action CSV with one stage per rank (the ``to_torch_csv`` form)
    back into a schedule. Empty cells (torch's bubbles, ``None`` actions) are skipped."""
    stages: list[tuple[Op, ...]] = []
    for rank, row in enumerate(csv.reader(io.StringIO(text))):
        ops = []
        for cell in row:
            cell = cell.strip()
            if not cell:
                continue
            m = _CELL_RE.match(cell)
            if not m:
                raise ExportError(f"rank {rank}: {cell!r} is not a compute action "
                                  "<stage><F|I|W|B><micro-batch>")
            if int(m.group(1)) != rank:
                raise ExportError(f"rank {rank}: {cell!r} runs stage {m.group(1)}; only one "
                                  "stage per rank, stage s on rank s, is supported")
            ops.append(Op(_FROM_TORCH[m.group(2)], int(m.group(3))))
        stages.append(tuple(ops))
    if num_microbatches is None:
        num_microbatches = 1 + max((op.mb for ops in stages for op in ops), default=-1)
    return Schedule(tuple(stages), num_microbatches)


def _check_runnable(schedule: Schedule) -> None:
    """Torch's runtime takes the last stage's losses in forward order: it must be 0..N-1."""
    if not schedule.stages:
        raise ExportError("empty schedule: no stages")
    last = [op.mb for op in schedule.stages[-1] if op.kind is OpKind.F]
    if last != sorted(last):
        raise ExportError(
            f"the last stage runs its forwards in the order {last}: torch's pipelining runtime "
            "needs them in micro-batch order (it files losses by arrival, reads them by index)"
        )
