"""Fig 15: iteration time vs the delay on the last link (2-3 at 4 stages; 0 to 120 ms) for the
four methods of the paper and ours, PipeMorph+.

The 0 ms point is fig20's no-fault runs, as the artifact drew it: 1F1B and ZB are their own
no-fault cells; PipeMorph-CPU, PipeMorph and PipeMorph+ take the All-CPU no-fault cell (one
delegate, the artifact's ``fig20/times.txt`` gives ZB-CPU and ZB-CPU-ReSchedule its value).
``fig15.json`` has the cells and, per method, the series drawn (``series``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from engine.methods import METHODS
from figures.base import FigureReport
from figures.cells import Cell, cell_label, links_key
from figures.measured import MeasuredFigure
from figures.prediction import draw_predicted
from figures.style import METHOD_COLORS, METHOD_MARKERS, label, legend, mark_missing, pyplot, save
from figures.table import Comparison, Measured, build_report, gather

DELAYS = (0.02, 0.04, 0.06, 0.08, 0.10, 0.12)
QUICK_DELAYS = (0.06, 0.12)
ZERO_MS = "0 ms: all-cpu no-fault, as the artifact (1F1B and ZB: their own no-fault runs)"


class Fig15(MeasuredFigure):
    name = "fig15"
    title = "Iteration time vs delay on the last link"
    healthy_methods = ("1f1b", "zb", "all-cpu")  # the 0 ms sources (all-cpu: 1 delegate)

    def delays(self, quick: bool) -> tuple[float, ...]:
        return QUICK_DELAYS if quick else DELAYS

    def plot(self, results_root: Path, cells: list[Cell], reference: Path | None = None) -> FigureReport:
        data = gather(results_root, cells, reference)
        faulty = [c for c in cells if not c.healthy]
        link_text = " + ".join(sorted({links_key(c.links).replace("_", "-") for c in faulty})) or "none"
        methods = list(dict.fromkeys(c.method for c in faulty)) or list(self.methods)
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        xs_all = sorted({0.0, *(c.delay_s for c in faulty)})
        series: dict[str, list[dict[str, Any]]] = {}
        for mi, method in enumerate(methods):
            points = [(x, _point(data, faulty, method, x)) for x in xs_all]
            series[method] = [_series_point(x, c) for x, c in points]
            xs = [x * 1000 for x, _ in points]
            ys = [c.result.iteration_time_s if c else math.nan for _, c in points]
            errs = [c.result.std_s if c else math.nan for _, c in points]
            color = METHOD_COLORS[method]
            ax.errorbar(xs, ys, yerr=errs, color=color, marker=METHOD_MARKERS[method],
                        markersize=4, capsize=2, label=label(method))
            draw_predicted(ax, xs, [c.result.predicted_s if c else math.nan for _, c in points],
                           line=True)
            for x, y in zip(xs, ys):
                if not math.isfinite(y):
                    # Offset per method so several missing methods at one delay stay readable.
                    mark_missing(ax, x + (mi - (len(methods) - 1) / 2) * 2.2, 2.0)
            if data.has_reference:
                refs = [data.scaled_reference(c) if c else math.nan for _, c in points]
                ax.plot(xs, refs, color=color, linestyle=":", marker=METHOD_MARKERS[method],
                        markerfacecolor="none", markersize=4, linewidth=0.8)
        ax.set_xlabel(f"delay on link {link_text} (ms); {data.tf_text}")
        ax.set_ylabel("iteration time (s)")
        ax.set_ylim(bottom=0)
        suffix = " (dotted: artifact A10, scaled)" if data.has_reference else ""
        stages = cells[0].stages if cells else 4
        ax.set_title(f"Iteration time vs delay on link {link_text} ({stages} stages){suffix}", fontsize=9)
        fig.text(0.01, 0.01, ZERO_MS, fontsize=6, color="#555555")
        legend(ax, fontsize=7)
        notes = [*data.notes(), ZERO_MS + "; PipeMorph+ is ours, not the paper's"]
        out_dir = Path(results_root) / self.name
        files = save(fig, out_dir, self.name)
        return build_report(self.name, out_dir, files, data.comparisons, notes,
                            {"zero_ms": ZERO_MS, "series": series})


def zero_ms_source(method: str) -> str:
    """Whose no-fault cell is ``method``'s 0 ms point: 1F1B's and ZB's own; the offloading
    methods' is All-CPU's (the artifact's fig15 took fig20's ALL-CPU time for them)."""
    return METHODS[method].healthy_schedule if METHODS[method].offload == "never" else "all-cpu"


def _point(data: Measured, faulty: list[Cell], method: str, delay_s: float) -> Comparison | None:
    if delay_s == 0:
        healthy = [c for c in data.comparisons if c.result.cell.healthy]
        source = zero_ms_source(method)
        # a method's own no-fault cell only where asked for (--delays 0) and no source ran
        return next((c for c in healthy if c.result.cell.method == source),
                    next((c for c in healthy if c.result.cell.method == method), None))
    cell = next((c for c in faulty if c.method == method and c.delay_s == delay_s), None)
    return data.find(method, cell) if cell is not None else None


def _series_point(delay_s: float, c: Comparison | None) -> dict[str, Any]:
    """One point of a method's line in ``fig15.json``: the cell it comes from and its time."""
    r = c.result if c else None
    ok = r is not None and r.ok
    return {
        "delay_ms": round(delay_s * 1000, 6),
        "cell": cell_label(r.cell) if r else None,
        "iteration_time_s": round(r.iteration_time_s, 6) if ok else None,
        "std_s": round(r.std_s, 6) if ok else None,
        "predicted_s": round(r.predicted_s, 6) if r and math.isfinite(r.predicted_s) else None,
        "status": r.status if r else "missing",
    }


FIGURE = Fig15()
