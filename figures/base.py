"""What every figure module provides (``FIGURE`` at module level) and what plotting returns.

Simulated figures compute their numbers (``compute``) into ``results/<fig>/``; measured figures
declare cells that pmctl's orchestration runs into ``results/<fig>/<method>/<links>/<delay>/``.
Both plot from the results folder. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from figures.cells import Cell

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class FigureReport:
    """What ``plot`` produced: files written, rows for the terminal table, JSON cells."""

    figure: str
    files: list[Path]
    columns: list[str]
    rows: list[list[Any]]
    cells: list[dict[str, Any]] = field(default_factory=list)  # the `pmctl plot --json` cells
    missing: list[str] = field(default_factory=list)  # cells drawn as missing, with reasons
    notes: list[str] = field(default_factory=list)


class Figure(Protocol):
    """One paper figure."""

    name: str  # "fig15"
    title: str
    kind: Literal["simulated", "measured"]

    def cells(self, base: Cell, quick: bool = False, axes: Any = None) -> list[Cell]:
        """Measured figures: the cells to run, made from the template spec ``base`` (cells
        may belong to another figure, e.g. fig15's 0 ms point is fig20's); ``axes``
        (``figures.measured.Axes``) replaces the figure's sweep. Simulated figures: []."""
        ...

    def estimate_seconds(self, base: Cell, quick: bool) -> float:
        """Rough wall time of ``pmctl run`` for this figure with ``base``'s spec."""
        ...

    def compute(
        self, fig_dir: Path, quick: bool, progress: Progress | None = None, extras: bool = False
    ) -> None:
        """Simulated figures: compute the numbers into ``fig_dir`` (measured: nothing).
        ``extras`` adds the expensive extra lines (``pmctl run FIG --extras``: fig19's MILP
        from pipemorph alone, minutes); without them the plot notes what was left out."""
        ...

    def plot(self, results_root: Path, *args: Any) -> FigureReport:
        """Draw ``results_root/<fig>/<fig>.png|.pdf`` and ``<fig>.json`` from the results:
        measured figures ``plot(root, cells, reference)`` (the cells to draw), simulated ones
        ``plot(root, reference)``."""
        ...
