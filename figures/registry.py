"""The figure registry: figure names in paper order and lazy access to each module's ``FIGURE``.

Importing a figure module pulls in only what it needs (the planner for simulated figures); no
module here imports matplotlib or torch at import time.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from figures.base import Figure, FigureReport

# Paper order; name -> module under ``figures``.
_MODULES: dict[str, str] = {
    "fig4": "fig4",
    "fig5": "fig5",
    "fig8": "fig8",
    "fig14": "fig14",
    "fig15": "fig15",
    "fig16": "fig16",
    "fig17": "fig17",
    "fig18": "fig18",
    "fig19": "fig19",
    "fig20": "fig20",
    "sim-compare": "sim_compare",
}


class UnknownFigureError(ValueError):
    """A figure name that is not in the registry."""


def figure_names() -> list[str]:
    """Every figure name, in paper order."""
    return list(_MODULES)


def get_figure(name: str) -> Figure:
    """The ``FIGURE`` of figure ``name`` (``fig15``, ``15``, ``Fig15`` and ``sim_compare`` work)."""
    key = name.strip().lower().replace("_", "-")
    if key.isdigit():
        key = f"fig{key}"
    if key not in _MODULES:
        raise UnknownFigureError(
            f"unknown figure {name!r}: use one of {', '.join(_MODULES)}"
        )
    module = importlib.import_module(f"figures.{_MODULES[key]}")
    return module.FIGURE  # type: ignore[no-any-return]


def plot_root(figure: Figure, results_root: Path) -> Path:
    """Where ``plot`` reads a figure from: the full run's results, or the ``--quick`` run's
    (``<results>/quick``) when only that one has any."""
    from figures.cells import QUICK_DIR
    from figures.measured import has_results
    from figures.simulated import data_path

    quick_root = Path(results_root) / QUICK_DIR
    if figure.kind == "measured":
        cells = figure.cells  # type: ignore[attr-defined]
        use_quick = not has_results(cells(False), results_root) and has_results(cells(True), quick_root)
    else:
        name = figure.name
        use_quick = (not data_path(Path(results_root) / name, name).exists()
                     and data_path(quick_root / name, name).exists())
    return quick_root if use_quick else Path(results_root)


def plot_figure(name: str, results_root: Path, reference: Path | None = None) -> FigureReport:
    """Renders figure ``name`` from ``results_root`` (or its ``quick`` run, see ``plot_root``);
    measured figures first get the per-cell timelines their finished cells lack."""
    from figures.cells import cell_folder
    from figures.measured import choose_cells
    from figures.timeline import ensure_timelines

    figure = get_figure(name)
    results_root = plot_root(figure, results_root)
    if figure.kind == "measured":
        cells = choose_cells(figure.cells(False), figure.cells(True), results_root)
        ensure_timelines([cell_folder(results_root, c) for c in cells])
    return figure.plot(results_root, reference)
