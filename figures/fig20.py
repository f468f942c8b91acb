"""Fig 20: the overhead of always-on offload with no fault (1F1B, ZB, PipeMorph-All-CPU).

All-CPU runs twice: with one delegate per direction, as the artifact measured it (its
``fig20/times.txt``; also fig15's 0 ms point of the offloading methods), and with the spec's
delegates (ours: automatic unless ``--delegates``) as a second bar. The two cells differ only
in ``delegates``; the artifact's lives in ``fig20-k1/`` (``figures.measured.nofault_cell``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from figures.base import FigureReport
from figures.cells import Cell, cell_label
from figures.measured import ARTIFACT_DELEGATES, Axes, MeasuredFigure, nofault_cell
from figures.prediction import draw_predicted
from figures.style import METHOD_COLORS, label, mark_missing, pyplot, save
from figures.table import Comparison, build_report, gather


class Fig20(MeasuredFigure):
    name = "fig20"
    title = "No-fault overhead of always-on offload"
    methods = ()
    healthy_methods = ("1f1b", "zb", "all-cpu")

    def cells(self, base: Cell, quick: bool = False, axes: Axes | None = None) -> list[Cell]:
        """1F1B, ZB and the artifact's All-CPU (one delegate), then All-CPU with ``base``'s
        delegates (the same cell when ``base`` has one delegate)."""
        out = super().cells(base, quick, axes or Axes())
        if any(c.method in ARTIFACT_DELEGATES for c in out):
            ours = [nofault_cell(base, m, as_artifact=False) for m in ARTIFACT_DELEGATES]
            out += [c for c in ours if c not in out]
        return out

    def plot(self, results_root: Path, cells: list[Cell], reference: Path | None = None) -> FigureReport:
        data = gather(results_root, cells, reference)
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        bars = [_bar(c, data.scaled_reference(c)) for c in data.comparisons]
        marked = False
        for x, (c, bar) in enumerate(zip(data.comparisons, bars)):
            r = c.result
            if r.ok:
                ax.bar(x, r.iteration_time_s, 0.7, yerr=r.std_s, capsize=2,
                       color=METHOD_COLORS.get(r.cell.method, "grey"),
                       hatch="//" if bar["ours"] else None, edgecolor="white")
            else:
                mark_missing(ax, x, 0.7)
            draw_predicted(ax, [x], [r.predicted_s])
            ref = bar["artifact_scaled_s"]
            if ref is not None:
                ax.plot(x, ref, marker="_", markersize=14, markeredgewidth=2, color="black",
                        linestyle="none", label=None if marked else "artifact (A10, scaled)")
                marked = True
        ax.set_xticks(range(len(bars)), [b["bar"] for b in bars], fontsize=6)
        ax.set_ylabel("iteration time (s)")
        ax.set_title(f"{self.title}\n({data.tf_text})", fontsize=9)
        if marked:
            ax.legend(fontsize=7)
        notes = [*data.notes(),
                 "All-CPU: 1 delegate per direction as the artifact; hatched: ours "
                 "(the spec's delegates, 0 = automatic)"]
        out_dir = Path(results_root) / self.name
        files = save(fig, out_dir, self.name)
        report = build_report(self.name, out_dir, files, data.comparisons, notes, {"bars": bars})
        # the table names each bar as drawn (the two All-CPU rows differ in delegates only)
        report.rows = [[b["bar"].replace("\n", " "), *row[1:]] for b, row in zip(bars, report.rows)]
        return report


def _bar(c: Comparison, artifact_scaled_s: float) -> dict[str, Any]:
    """One bar of the figure (and of ``fig20.json``'s ``bars``): its label and cell."""
    cell = c.result.cell
    pinned = ARTIFACT_DELEGATES.get(cell.method)
    ours = pinned is not None and cell.delegates != pinned
    if pinned is None:
        text = label(cell.method)
    elif ours:
        count = f"{cell.delegates} delegates" if cell.delegates else "auto delegates"
        text = f"{label(cell.method)}\n{count}\n(ours)"
    else:
        text = f"{label(cell.method)}\n{pinned} delegate\n(as the artifact)"
    ok = c.result.ok
    return {
        "bar": text,
        "method": cell.method,
        "delegates": cell.delegates,
        "ours": ours,
        "cell": cell_label(cell),
        "iteration_time_s": round(c.result.iteration_time_s, 6) if ok else None,
        "status": c.result.status,
        # the artifact measured the one-delegate All-CPU only
        "artifact_scaled_s": (round(artifact_scaled_s, 6)
                              if math.isfinite(artifact_scaled_s) and not ours else None),
    }


FIGURE = Fig20()
