"""Reading a figure's measured cells back from the results store.

A cell lives in ``<root>/<cell.figure>/<method>/<links>/<delay>/`` with ``stage<s>.jsonl`` op logs
(``engine.oplog``) and ``cell.json`` (``{"status": "done"|"failed"|"interrupted", "reason",
"spec"}``). Iteration time is the paper's (section 5): per iteration the max over stages of the
last op end on the shared clock, then mean and standard deviation of the last
``LAST_ITERATIONS`` iterations. Pure reading, plus ``MeasuredFigure``, the measured figures' base.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.methods import METHODS
from engine.opkind import OpKind
from engine.oplog import (
    LAST_ITERATIONS,
    IterationRecord,
    RecordLike,
    iteration_times_ms,
    read_typed,
    split_records,
    summarize,
)
from figures.base import Progress
from figures.cells import Cell, Link, cell_folder, delay_key, links_key
from figures.prediction import predicted_seconds
from figures.store import has_results, read_status


@dataclass(frozen=True)
class CellResult:
    """One cell's numbers, or why it has none (status other than ``done``)."""

    cell: Cell
    status: str  # "done" | "failed" | "interrupted" | "missing" | "stale" | "no-data"
    iteration_time_s: float  # nan when not measured
    std_s: float
    bubble_rate: float  # mean over the same iterations; nan when not measured
    forward_ms: float  # median measured F duration; nan when none
    reason: str = ""
    predicted_s: float = math.nan  # the path model's value from the cell's own op log

    @property
    def ok(self) -> bool:
        return self.status == "done" and math.isfinite(self.iteration_time_s)

    def key(self) -> str:
        """``zb 2_3 0.06``: how a cell is named in tables and missing-cell lists."""
        return f"{self.cell.method} {links_key(self.cell.links)} {delay_key(self.cell.delay_s)}"

    def to_json(self) -> dict[str, Any]:
        """The ``pmctl plot --json`` cell: the spec's fields (``figure_dir`` is the folder the
        cell lives in), its numbers and its status."""
        spec = self.cell.to_json()
        return {
            "figure_dir": spec.pop("figure"),
            **spec,
            "iteration_time_s": _num(self.iteration_time_s),
            "std_s": _num(self.std_s),
            "predicted_s": _num(self.predicted_s),
            "status": self.status,
            **({"reason": self.reason} if self.reason else {}),
        }


def _num(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


def forward_ms(records: Iterable[RecordLike]) -> float:
    """Median duration of the measured forwards (ms); nan when there are none."""
    durs = [r.duration_ms for r in split_records(records)[0] if r.op is OpKind.F]
    return statistics.median(durs) if durs else math.nan


def bubble_rates(records: Iterable[RecordLike], times_ms: dict[int, float]) -> dict[int, float]:
    """Per iteration: 1 - (busy compute time of all stages) / (stages x iteration time)."""
    busy: dict[int, float] = {}
    stages: set[int] = set()
    for r in split_records(records)[0]:
        if r.op.is_compute:
            busy[r.iteration] = busy.get(r.iteration, 0.0) + r.duration_ms
            stages.add(r.stage)
    return {
        it: 1.0 - busy.get(it, 0.0) / (len(stages) * t)
        for it, t in times_ms.items()
        if t > 0 and stages
    }


def read_cell(results_root: Path, cell: Cell) -> CellResult:
    """The cell's numbers from its op logs, with its status from ``cell.json``; a result of
    another spec (other iterations, preset...) is ``stale``, never drawn as this cell."""
    path = cell_folder(results_root, cell)
    status, reason = read_status(path, cell)
    nan = math.nan
    if status != "done":
        return CellResult(cell, status, nan, nan, nan, nan, reason)
    ops, heads = read_typed(path)
    other = foreign_generators(cell, heads)
    if other:
        return CellResult(cell, "stale", nan, nan, nan, nan, other)
    records = [*heads, *ops]  # parsed once, typed
    times = iteration_times_ms(records)
    if not times:
        return CellResult(cell, "no-data", nan, nan, nan, nan, "cell.json says done but no op records")
    stats = summarize(times, LAST_ITERATIONS)
    bubbles = bubble_rates(records, times)
    used = [bubbles[i] for i in stats.iterations_used if i in bubbles]
    return CellResult(
        cell,
        "done",
        stats.mean_ms / 1000.0,
        stats.std_ms / 1000.0,
        statistics.fmean(used) if used else nan,
        forward_ms(records),
        predicted_s=predicted_seconds(records, cell.delegates),
    )


def foreign_generators(cell: Cell, heads: list[IterationRecord]) -> str:
    """Why a result's logged plans are not its method's ('' when they are): a ``pipemorph``
    cell run before PipeMorph re-planned with the paper's rule logged ``pipemorph+`` plans,
    under the same spec."""
    method = METHODS[cell.method]
    own = {method.healthy_schedule, method.adapt_generator}
    odd = sorted({h.schedule_generator for h in heads} - own - {None})
    if not odd:
        return ""
    return (f"planned with {', '.join(odd)}, not {cell.method}'s generator (an older pmctl's "
            "run): rerun it with pmctl run --force")


def read_cells(results_root: Path, cells: list[Cell]) -> list[CellResult]:
    """``read_cell`` for each cell, in order."""
    return [read_cell(results_root, c) for c in cells]


def measured_forward_ms(results: list[CellResult]) -> float:
    """The median of the cells' median forward times: the figure's stated tF (ms)."""
    vals = [r.forward_ms for r in results if math.isfinite(r.forward_ms)]
    return statistics.median(vals) if vals else math.nan


# Rough wall time on the embedded default: start-up (one torch import, forked) + rendezvous +
# collection per cell, and an A10-like healthy iteration (the cpu-small preset is sized to the
# A10's op times).
_CELL_STARTUP_S = 3.5
_HEALTHY_ITERATION_S = 1.2


# The artifact ran its no-fault All-CPU with one delegate per direction (fig20/times.txt, which
# is also its fig15 0 ms point of ZB-CPU and ZB-CPU-ReSchedule).
ARTIFACT_DELEGATES = {"all-cpu": 1}


def nofault_cell(base: Cell, method: str, as_artifact: bool = True) -> Cell:
    """fig20's healthy run of ``method`` with ``base``'s spec (fig15 reuses them for its 0 ms
    point). ``as_artifact``: All-CPU with the artifact's one delegate, in its own folder
    ``fig20-k1`` unless ``base`` has that count already; else ``base``'s delegates (0 =
    automatic), in ``fig20``."""
    cell = replace(base, figure="fig20", method=method, links=(), delay_s=0.0, trace="", trace_text="")
    pinned = ARTIFACT_DELEGATES.get(method) if as_artifact else None
    if pinned is None or pinned == base.delegates:
        return cell
    return replace(cell, figure=f"fig20-k{pinned}", delegates=pinned)


def estimate_seconds(cells: list[Cell]) -> float:
    """Rough ``pmctl run`` wall time for ``cells``: the non-adapting methods pay about the
    delay per micro-batch once the fault is on, the offloading ones a fraction of it."""
    total = 0.0
    for c in cells:
        faulty = 0 if c.healthy else c.iterations - c.fault_at
        delay = c.delay_s if math.isfinite(c.delay_s) else 0.0
        per_mb = delay if METHODS[c.method].offload == "never" else delay / 4
        total += _CELL_STARTUP_S + c.iterations * _HEALTHY_ITERATION_S + faulty * per_mb * c.microbatches
    return total


def choose_cells(full: list[Cell], quick: list[Cell], results_root: Path) -> list[Cell]:
    """The cells ``plot`` draws: the full set, unless only cells of the quick subset have
    results (then a quick run's plot does not list the other delays as missing)."""
    others = [c for c in full if c not in quick]
    if not has_results(others, results_root) and has_results(quick, results_root):
        return quick
    return full


@dataclass(frozen=True)
class Axes:
    """The command line's replacements for a figure's sweep (empty = the figure's own):
    methods, slow-link sets (``()`` = the no-fault cells) and delays (0 = no fault)."""

    methods: tuple[str, ...] = ()
    link_sets: tuple[tuple[Link, ...], ...] = ()
    delays_s: tuple[float, ...] = ()


def last_link(stages: int) -> tuple[Link, ...]:
    """The pipeline's last link (2_3 at 4 stages, 6_7 at 8)."""
    return ((stages - 2, stages - 1),)


class MeasuredFigure:
    """Base of the measured figures. A figure declares its sweep (methods x slow-link sets x
    delays, link sets relative to the stage count, plus the no-fault cells it draws) and
    draws ``plot`` from the results store; ``pmctl run`` runs the cells."""

    name: str
    title: str
    kind = "measured"
    methods: tuple[str, ...] = ("1f1b", "zb", "pipemorph-cpu", "pipemorph", "pipemorph+")
    healthy_methods: tuple[str, ...] = ()  # their no-fault cells (fig20's) are drawn too
    cells_figure: str = ""  # whose folder the faulty cells live in ('' = this figure's)

    def link_sets(self, stages: int) -> list[tuple[Link, ...]]:
        """The slow-link sets of the faulty cells for a pipeline of ``stages``: by default the
        paper's single slow link, the last one (2_3 at 4 stages, 6_7 at 8)."""
        return [last_link(stages)]

    def delays(self, quick: bool) -> tuple[float, ...]:
        """The delays (seconds) of the faulty cells, full or ``--quick``."""
        return ()

    def cells(self, base: Cell, quick: bool = False, axes: Axes = Axes()) -> list[Cell]:
        """The cells to run or draw, made from the template ``base`` (stages, preset ...),
        with ``axes`` replacing the figure's own sweep where given."""
        methods = axes.methods or self.methods
        link_sets = list(axes.link_sets) or self.link_sets(base.stages)
        delays = axes.delays_s or self.delays(quick)
        healthy = [m for m in self.healthy_methods if not axes.methods or m in axes.methods]
        if axes.delays_s and 0 not in axes.delays_s or axes.link_sets and () not in axes.link_sets:
            healthy = []
        elif 0 in axes.delays_s or () in axes.link_sets:  # no-fault cells asked for: every method's
            healthy = list(dict.fromkeys([*healthy, *methods]))
        figure = self.cells_figure or self.name
        out = [nofault_cell(base, m) for m in healthy]
        out += [base.with_fault(figure, m, links, d)
                for links in link_sets if links for d in delays if d for m in methods]
        return out

    def estimate_seconds(self, base: Cell, quick: bool) -> float:
        """Rough ``pmctl run`` wall time of this figure's cells."""
        return estimate_seconds(self.cells(base, quick))

    def compute(
        self, fig_dir: Path, quick: bool, progress: Progress | None = None, extras: bool = False
    ) -> None:
        """Nothing: a measured figure's numbers come from its cells' op logs (``extras`` is
        ignored)."""
