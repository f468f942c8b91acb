"""Fixtures of the figure tests (helpers live in ``fig_synthetic``: conftest is not importable
by name when several test folders have one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fig_synthetic import write_fig15_quick

from figures.base import FigureReport
from figures.registry import plot_figure


@pytest.fixture(scope="module")
def fig15_plotted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FigureReport]:
    """fig15 plotted once from its quick fixture cells: (results root, report)."""
    root = write_fig15_quick(tmp_path_factory.mktemp("results"))
    return root, plot_figure("fig15", root)
