"""The figure registry: figure names in paper order and lazy access to each module's ``FIGURE``.

Importing a figure module pulls in only what it needs (the planner for simulated figures); no
module here imports matplotlib or torch at import time.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from figures.base import Figure, FigureReport
from figures.cells import Cell

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
    "nic-crash": "nic_crash",
    "dynamic": "dynamic",
    "breakdown": "breakdown",
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


# A simulated figure's `--quick` numbers live apart, in <results>/quick/<fig>/.
QUICK_DIR = "quick"


def simulated_root(results: Path, quick: bool) -> Path:
    """Where a simulated figure's numbers go: ``results/`` or, for ``--quick``, ``results/quick``."""
    return Path(results) / QUICK_DIR if quick else Path(results)


def measured_cells(figure: Figure, results: Path, base: Cell, quick: bool, axes: Any = None) -> list[Cell]:
    """The cells ``plot`` draws: the ``--quick`` subset when asked, else the full set, unless
    only cells of the quick subset have results (a quick run's plot does not list the other
    delays as missing)."""
    from figures.cells import figure_root
    from figures.measured import Axes, choose_cells

    axes = axes or Axes()
    quick_cells = figure.cells(base, True, axes)
    if quick:
        return quick_cells
    return choose_cells(figure.cells(base, False, axes), quick_cells, figure_root(results, base))


def plot_figure(name: str, results: Path, base: Cell | None = None, quick: bool = False,
                axes: Any = None, reference: Path | None = None) -> FigureReport:
    """Renders figure ``name``. Measured figures draw their cells of spec ``base`` (default:
    the paper's) from ``figure_root(results, base)``, first drawing the per-cell timelines
    their finished cells lack; simulated ones draw ``results/<fig>`` (or the ``--quick``
    numbers when only those exist)."""
    from figures.cells import base_spec, cell_folder, figure_root
    from figures.simulated import data_path
    from figures.timeline import ensure_timelines

    figure = get_figure(name)
    if figure.kind == "measured":
        base = base or base_spec()
        root = figure_root(results, base)
        cells = measured_cells(figure, results, base, quick, axes)
        ensure_timelines([cell_folder(root, c) for c in cells])
        return figure.plot(root, cells, reference)
    root = simulated_root(results, quick)
    full, fast = data_path(root / name, name), data_path(simulated_root(results, True) / name, name)
    if not quick and not full.exists() and fast.exists():
        root = simulated_root(results, True)
    return figure.plot(root, reference)
