"""The path model against real runs: predicted vs measured iteration time of every done cell.

    .venv/bin/python bench/bench_prediction.py [--results results] [--figures fig15,fig16,fig17]
        [--statistic mean|median] [--preset P] [--stages S]

For every done cell of the figures (their full cell sets, the no-fault cells fig15 draws
included) under the results folder: the measured value (mean of the last 5 iterations),
the prediction (``figures.prediction``: the cell's own op-log costs through
``engine.planner.engine_paths``), the error, and "replay": each iteration replayed with its
own logged op durations, which isolates the path mechanics from the cost statistic (a
replay error near 0 with a large prediction error means the costs varied, not the paths).
Then per method the mean and max |error|, the max overall, and a last line
``within 5%: K/N cells``. Goal (issue 12): every cell within 5% on the local default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from figures.cells import Cell, base_spec, cell_folder, delay_key, links_key  # noqa: E402
from figures.measured import read_cell  # noqa: E402
from figures.prediction import CellPrediction, predict_cell  # noqa: E402
from figures.registry import get_figure  # noqa: E402

GOAL = 0.05


def done_cells(results: Path, figures: list[str], preset: str | None,
               stages: int | None) -> list[tuple[str, Cell]]:
    """(figure, cell) for each distinct done cell of ``figures`` (the first figure that draws
    a cell names it)."""
    base = base_spec(preset=preset, stages=stages)
    seen: set[Path] = set()
    out = []
    for name in figures:
        for cell in get_figure(name).cells(base, quick=False):
            folder = cell_folder(results, cell)
            if folder in seen or not read_cell(results, cell).ok:
                continue
            seen.add(folder)
            out.append((name, cell))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--figures", default="fig15,fig16,fig17")
    parser.add_argument("--statistic", choices=("mean", "median"), default="mean",
                        help="how a stage's op costs are summarised (default mean)")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--stages", type=int, default=None)
    args = parser.parse_args()
    cells = done_cells(args.results, [f for f in args.figures.split(",") if f], args.preset,
                       args.stages)
    print(f"{'figure':7} {'method':14} {'links':8} {'delay':6} {'measured':>9} {'predicted':>9} "
          f"{'error':>8} {'replay':>8} {'K':>3}")
    errors: dict[str, list[float]] = {}
    within = 0
    for figure, cell in cells:
        p: CellPrediction | None = predict_cell(cell_folder(args.results, cell), cell.delegates,
                                                args.statistic)
        if p is None:
            print(f"{figure:7} {cell.method:14} {links_key(cell.links):8} "
                  f"{delay_key(cell.delay_s):6} cannot be predicted (no replayable iteration)")
            errors.setdefault(cell.method, []).append(float("inf"))
            continue
        replay = p.replayed_s / p.measured_s - 1.0
        print(f"{figure:7} {cell.method:14} {links_key(cell.links):8} {delay_key(cell.delay_s):6} "
              f"{p.measured_s:9.3f} {p.predicted_s:9.3f} {p.error * 100:+7.1f}% "
              f"{replay * 100:+7.1f}% {p.delegates if p.uses_delegates else '-':>3}")
        errors.setdefault(cell.method, []).append(abs(p.error))
        within += abs(p.error) <= GOAL
    print()
    for method, errs in errors.items():
        print(f"{method:14} cells {len(errs):2}  mean |error| {statistics.fmean(errs) * 100:5.1f}%  "
              f"max {max(errs) * 100:5.1f}%")
    flat = [e for errs in errors.values() for e in errs]
    if flat:
        print(f"max |error| {max(flat) * 100:.1f}%")
    print(f"within {GOAL:.0%}: {within}/{len(flat)} cells")


if __name__ == "__main__":
    main()
