"""A PNG/PDF timeline of a simulated schedule (matplotlib is imported only when drawing)."""

from __future__ import annotations

from pathlib import Path

from engine.planner.ir import OpKind
from engine.planner.simulate import SimResult

# Colours in the spirit of the ZB / PipeMorph timelines: F blue, B teal, W grey-green.
COLORS = {OpKind.F: "#4c72b0", OpKind.B: "#55a868", OpKind.W: "#c7d4a7", OpKind.BW: "#8172b2"}


def plot_timeline(result: SimResult, path: Path, title: str = "") -> None:
    """Draws one bar per op, one row per stage (stage 0 on top), micro-batch in the bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    S = result.schedule.num_stages
    T = result.iteration_time
    fig, ax = plt.subplots(figsize=(max(6.0, min(18.0, 0.25 * len(result.ops) / S)), 0.5 * S + 1.2))
    for t in result.ops:
        y = S - 1 - t.stage
        ax.barh(y, t.end - t.start, left=t.start, height=0.8, color=COLORS[t.op.kind],
                edgecolor="black", linewidth=0.4)
        if (t.end - t.start) / T > 0.012:
            ax.text((t.start + t.end) / 2, y, str(t.op.mb), ha="center", va="center", fontsize=6)
    ax.set_yticks(range(S))
    ax.set_yticklabels([f"stage {S - 1 - i}" for i in range(S)])
    ax.set_xlim(0, T)
    ax.set_xlabel("time")
    full = f"T = {T:g}, bubble rate = {result.bubble_rate:.1%}"
    ax.set_title(f"{title}: {full}" if title else full, loc="left")
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[k]) for k in COLORS]
    ax.legend(handles, [k.value for k in COLORS], ncol=4, loc="lower right",
              bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
