"""The figures' look: one colour and label per method, op colours, missing-cell marks, saving.

matplotlib is imported lazily with the Agg backend (no display, and ``pmctl --help`` stays
fast); every plotting module gets pyplot through ``pyplot()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.methods import METHODS
from figures.prediction import draw_predicted

# One colour and marker per method, everywhere: the method registry's.
METHOD_COLORS: dict[str, str] = {m.id: m.color for m in METHODS.values()}
METHOD_MARKERS: dict[str, str] = {m.id: m.marker for m in METHODS.values()}
# Op colours of timelines (F/B/W as in the ZB paper's figures; BW = 1F1B's full backward).
OP_COLORS: dict[str, str] = {"F": "#7FB3E6", "B": "#F2C46D", "W": "#8FD18F", "BW": "#E0A96D"}
SEND_COLOR = "#444444"
RECV_COLOR = "#AAAAAA"
DELAY_COLOR = "#D62728"
MISSING_HATCH = "///"


def label(method: str) -> str:
    """The paper's label of a method id (``pipemorph-cpu`` -> ``PipeMorph-CPU``)."""
    return METHODS[method].label if method in METHODS else method


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, with the figures' defaults applied."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.frameon": False,
        }
    )
    return plt


def mark_missing(ax: Any, x: float, width: float, text: str = "n/a") -> None:
    """Draws a hatched full-height band labelled ``n/a`` at ``x``: a missing cell must never
    read as a value (the artifact's plots drew 0)."""
    from matplotlib.transforms import blended_transform_factory

    trans = blended_transform_factory(ax.transData, ax.transAxes)
    ax.add_patch(
        _rect((x - width / 2, 0.0), width, 1.0, trans, hatch=MISSING_HATCH)
    )
    ax.text(x, 0.04, text, transform=trans, ha="center", va="bottom", fontsize=7, color="#555555")


def _rect(xy: tuple[float, float], w: float, h: float, transform: Any, hatch: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle(
        xy, w, h, transform=transform, fill=False, hatch=hatch, edgecolor="#999999", linewidth=0.0
    )


def save(fig: Any, out_dir: Path, name: str, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Writes ``<name>.<format>`` into ``out_dir`` for each format and closes the figure."""
    plt = pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{fmt}" for fmt in formats]
    fig.tight_layout()
    for p in paths:
        fig.savefig(p)
    plt.close(fig)
    return paths



def grouped_bars(
    ax: Any,
    groups: list[str],
    methods: list[str],
    values: dict[tuple[str, str], tuple[float, float]],
    reference: dict[tuple[str, str], float] | None = None,
    predicted: dict[tuple[str, str], float] | None = None,
) -> None:
    """Bars per (group, method) with error bars; a missing key or a nan value is drawn as
    ``n/a``. ``reference`` values (the artifact, in our units) are short black ticks,
    ``predicted`` ones (the path model) thin diamonds."""
    import math

    width = 0.8 / max(len(methods), 1)
    labelled: set[str] = set()
    for gi, group in enumerate(groups):
        for mi, method in enumerate(methods):
            x = gi + (mi - (len(methods) - 1) / 2) * width
            y, err = values.get((group, method), (math.nan, math.nan))
            if math.isfinite(y):
                ax.bar(
                    x, y, width * 0.95, color=METHOD_COLORS.get(method, "grey"),
                    yerr=err if math.isfinite(err) else None, capsize=2,
                    label=None if method in labelled else label(method),
                )
                labelled.add(method)
            else:
                mark_missing(ax, x, width * 0.95)
            ref = (reference or {}).get((group, method), math.nan)
            if math.isfinite(ref):
                ax.plot(
                    x, ref, marker="_", markersize=12, markeredgewidth=2, color="black",
                    linestyle="none",
                    label=None if "artifact" in labelled else "artifact (A10, scaled)",
                )
                labelled.add("artifact")
            if predicted:
                draw_predicted(ax, [x], [predicted.get((group, method), math.nan)])
    ax.set_xticks(range(len(groups)), groups)


def legend(ax: Any, **kwargs: Any) -> None:
    """A legend in method order, when something is labelled (a figure with every cell
    missing has nothing)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    order = [m.label for m in METHODS.values()]
    pairs = sorted(zip(labels, handles), key=lambda p: order.index(p[0]) if p[0] in order else len(order))
    ax.legend([h for _, h in pairs], [lbl for lbl, _ in pairs], **kwargs)
