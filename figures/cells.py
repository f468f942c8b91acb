"""A cell: one measured run (method x slow links x delay) of a figure, and where it lives.

Shared by the figure registry (which declares cells) and pmctl's orchestration (which runs
them into ``results/<fig>/<method>/<links>/<delay>/``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

Link = tuple[int, int]

CELL_JSON = "cell.json"
# `pmctl run --quick` keeps its results apart, in <results>/quick/, so a quick run never
# replaces a full one (figures share cells: fig15's 0 ms points are fig20's cells).
QUICK_DIR = "quick"


def run_root(results_root: Path, quick: bool) -> Path:
    """The results root of a full run, or of a ``--quick`` one."""
    return Path(results_root) / QUICK_DIR if quick else Path(results_root)


def links_key(links: tuple[Link, ...]) -> str:
    """``((0, 1), (2, 3))`` -> ``"0_1,2_3"``; no links -> ``"none"``."""
    return ",".join(f"{a}_{b}" for a, b in links) if links else "none"


def delay_key(delay_s: float) -> str:
    """Seconds as the artifact spells a delay folder: ``0.06``, ``0.12``, ``0``, ``inf``."""
    return "inf" if math.isinf(delay_s) else f"{delay_s:g}"


@dataclass(frozen=True)
class Cell:
    """Everything needed to run one measured cell; its fields go to ``cell.json``."""

    figure: str
    method: str
    links: tuple[Link, ...] = ()
    delay_s: float = 0.0
    fault_at: int = 7
    iterations: int = 15
    microbatches: int = 12
    preset: str = "cpu-small"
    delegates: int = 0  # 0 = automatic
    seed: int = 0
    extra: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def healthy(self) -> bool:
        return not self.links or self.delay_s == 0

    @property
    def rel_dir(self) -> PurePosixPath:
        """Path of the cell below the figure's results folder."""
        return PurePosixPath(self.method, links_key(self.links), delay_key(self.delay_s))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["links"] = links_key(self.links)
        d["delay_s"] = "inf" if math.isinf(self.delay_s) else self.delay_s
        d["extra"] = dict(self.extra)
        return d


def cell_folder(results_root: Path, cell: Cell) -> Path:
    """Where a cell's results live: ``<root>/<cell.figure>/<method>/<links>/<delay>``."""
    return Path(results_root) / cell.figure / Path(*cell.rel_dir.parts)


def read_cell_json(folder: Path) -> dict[str, Any] | None:
    """The ``cell.json`` of a cell folder, or None when absent or unreadable."""
    try:
        return json.loads((Path(folder) / CELL_JSON).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def same_spec(cell: Cell, record: dict[str, Any] | None) -> bool:
    """Whether a ``cell.json`` record was produced by exactly this cell's spec (a ``--quick``
    result is not a full one, nor one with other iterations, preset or delegates)."""
    return bool(record) and record.get("spec") == cell.to_json()
