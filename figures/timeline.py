"""Timeline of one measured iteration: stages x time, F/B/W bars, sends/receives and the
injected delays beneath each stage's compute row.

``render_cell_timeline(cell_dir)`` writes ``<cell_dir>/timeline.png`` (the orchestration calls
it after each cell, ``pmctl plot`` for cells lacking one); ``draw_iteration`` draws one
iteration on a given axes (fig14 stacks three of them on one time axis).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.oplog import COMM_OPS, COMPUTE_OPS, read_records
from figures.style import DELAY_COLOR, OP_COLORS, RECV_COLOR, SEND_COLOR, pyplot, save

TIMELINE_NAME = "timeline"


class NoOpsError(ValueError):
    """A cell folder without op records to draw."""


def last_complete_iteration(records: list[dict[str, Any]]) -> int:
    """The last iteration that every stage logged ops for (a crash leaves a partial one)."""
    stages_by_iter: dict[int, set[int]] = {}
    all_stages: set[int] = set()
    for r in records:
        if r.get("kind") == "op":
            stages_by_iter.setdefault(int(r["iter"]), set()).add(int(r["stage"]))
            all_stages.add(int(r["stage"]))
    complete = [it for it, st in stages_by_iter.items() if st == all_stages]
    if not complete:
        raise NoOpsError("no iteration with ops from every stage")
    return max(complete)


def iteration_ops(records: list[dict[str, Any]], iteration: int) -> list[dict[str, Any]]:
    """The op records of one iteration."""
    return [r for r in records if r.get("kind") == "op" and int(r["iter"]) == iteration]


def draw_iteration(
    ax: Any, ops: list[dict[str, Any]], num_stages: int | None = None, legend: bool = True
) -> float:
    """Draws one iteration's ops on ``ax`` (stage 0 on top); returns its end time (ms)."""
    from matplotlib.patches import Patch

    stages = num_stages or 1 + max(int(r["stage"]) for r in ops)
    end = max((float(r["end_ms"]) for r in ops), default=0.0)
    # One collection per (stage, kind of bar): thousands of single bars render slowly.
    bars: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for r in ops:
        s, start, dur = int(r["stage"]), float(r["start_ms"]), float(r["end_ms"]) - float(r["start_ms"])
        op = r["op"]
        if op in COMPUTE_OPS:
            bars.setdefault((s, op), []).append((start, dur))
            if dur > end / 120:  # label the micro-batch where it fits
                ax.text(start + dur / 2, s - 0.15, f"{r['mb']}", ha="center", va="center",
                        fontsize=5, clip_on=True)
        elif op in COMM_OPS:
            send = op.startswith("SEND")
            if send:
                bars.setdefault((s, "send"), []).append((start, max(dur, end / 2000)))
            else:
                # A receive is posted long before it completes: mark its arrival only.
                tick = end / 400
                bars.setdefault((s, "recv"), []).append((start + dur - tick, tick))
            delay = float(r.get("delay_ms") or 0.0)
            if send and delay > 0:
                bars.setdefault((s, "delay"), []).append((start, delay))
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
    records = read_records(cell_dir)
    if not any(r.get("kind") == "op" for r in records):
        raise NoOpsError(f"{cell_dir}: no op records in stage*.jsonl to draw")
    it = last_complete_iteration(records) if iteration is None else iteration
    ops = iteration_ops(records, it)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 0.7 + 0.6 * (1 + max(int(r["stage"]) for r in ops))))
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
