"""Timeline of one measured iteration: stages x time, F/B/W bars, sends/receives and the
injected delays beneath each stage's compute row.

``render_cell_timeline(cell_dir)`` writes ``<cell_dir>/timeline.png`` (the orchestration calls
it after each cell, ``pmctl plot`` for cells lacking one); ``draw_iteration`` draws one
iteration on a given axes (fig14 stacks three of them on one time axis). The functions take
op-log records typed (``engine.oplog.OpRecord``) or as JSON objects (``read_records``, a
simulated figure's data file).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.oplog import OpRecord, RecordLike, read_typed, split_records
from figures.style import DELAY_COLOR, OP_COLORS, RECV_COLOR, SEND_COLOR, pyplot, save

TIMELINE_NAME = "timeline"


class NoOpsError(ValueError):
    """A cell folder without op records to draw."""


def last_complete_iteration(records: Iterable[RecordLike]) -> int:
    """The last iteration that every stage logged ops for (a crash leaves a partial one)."""
    stages_by_iter: dict[int, set[int]] = {}
    all_stages: set[int] = set()
    for r in split_records(records)[0]:
        stages_by_iter.setdefault(r.iteration, set()).add(r.stage)
        all_stages.add(r.stage)
    complete = [it for it, st in stages_by_iter.items() if st == all_stages]
    if not complete:
        raise NoOpsError("no iteration with ops from every stage")
    return max(complete)


def iteration_ops(records: Iterable[RecordLike], iteration: int) -> list[OpRecord]:
    """The op records of one iteration."""
    return [r for r in split_records(records)[0] if r.iteration == iteration]


def draw_iteration(
    ax: Any, ops: Iterable[RecordLike], num_stages: int | None = None, legend: bool = True
) -> float:
    """Draws one iteration's ops on ``ax`` (stage 0 on top); returns its end time (ms)."""
    from matplotlib.patches import Patch

    recs = split_records(ops)[0]
    stages = num_stages or 1 + max(r.stage for r in recs)
    end = max((r.end_ms for r in recs), default=0.0)
    # One collection per (stage, kind of bar): thousands of single bars render slowly.
    bars: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for r in recs:
        s, start, dur = r.stage, r.start_ms, r.duration_ms
        if r.op.is_compute:
            bars.setdefault((s, r.op.value), []).append((start, dur))
            if dur > end / 120:  # label the micro-batch where it fits
                ax.text(start + dur / 2, s - 0.15, f"{r.mb}", ha="center", va="center",
                        fontsize=5, clip_on=True)
        elif r.op.is_send:
            bars.setdefault((s, "send"), []).append((start, max(dur, end / 2000)))
            if r.delay_ms > 0:
                bars.setdefault((s, "delay"), []).append((start, r.delay_ms))
        elif r.op.is_recv:
            # A receive is posted long before it completes: mark its arrival only.
            tick = end / 400
            bars.setdefault((s, "recv"), []).append((start + dur - tick, tick))
    # (y offset, height, colour, edge) per kind of bar, relative to the stage's row.
    shape = {
        "send": (0.15, 0.12, SEND_COLOR),
        "recv": (0.3, 0.12, RECV_COLOR),
        "delay": (0.11, 0.04, DELAY_COLOR),
    }
    for (s, kind), spans in bars.items():
        if kind in OP_COLORS:
            ax.broken_barh(spans, (s - 0.4, 0.5), facecolors=OP_COLORS[kind],
                           edgecolors="black", linewidth=0.3)
        else:
            dy, h, color = shape[kind]
            ax.broken_barh(spans, (s + dy, h), facecolors=color, linewidth=0)
    ax.set_ylim(stages - 0.45 + 0.1, -0.5)
    ax.set_yticks(range(stages), [f"stage {s}" for s in range(stages)])
    ax.set_xlim(0, end * 1.01 if end > 0 else 1)
    ax.grid(False)
    if not legend:
        return end
    handles = [Patch(color=c, label=k) for k, c in OP_COLORS.items()]
    handles += [Patch(color=SEND_COLOR, label="send"), Patch(color=RECV_COLOR, label="arrival"),
                Patch(color=DELAY_COLOR, label="injected delay")]
    ax.legend(handles=handles, fontsize=6, ncol=len(handles), loc="upper center",
              bbox_to_anchor=(0.5, -0.3), frameon=False)
    return end


def render_cell_timeline(cell_dir: Path, iteration: int | None = None) -> Path:
    """Writes ``<cell_dir>/timeline.png`` for ``iteration`` (default: the last complete one)."""
    cell_dir = Path(cell_dir)
    records, _heads = read_typed(cell_dir)
    if not records:
        raise NoOpsError(f"{cell_dir}: no op records in stage*.jsonl to draw")
    it = last_complete_iteration(records) if iteration is None else iteration
    ops = iteration_ops(records, it)
    if not ops:
        raise NoOpsError(f"{cell_dir}: no op records of iteration {it} to draw")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 0.7 + 0.6 * (1 + max(r.stage for r in ops))))
    end = draw_iteration(ax, ops)
    ax.set_xlabel("time since the iteration start (ms)")
    ax.set_title(f"{'/'.join(cell_dir.parts[-3:])}: iteration {it}, {end:.0f} ms", fontsize=8)
    return save(fig, cell_dir, TIMELINE_NAME, formats=("png",))[0]


def ensure_timelines(cell_dirs: list[Path]) -> list[Path]:
    """Draws ``timeline.png`` in each finished cell folder lacking one; returns those drawn."""
    drawn = []
    for d in cell_dirs:
        if (d / f"{TIMELINE_NAME}.png").exists() or not any(d.glob("stage*.jsonl")):
            continue
        try:
            drawn.append(render_cell_timeline(d))
        except NoOpsError:
            continue
    return drawn
