"""The experiment matrix of ``pmctl run`` / ``plot`` / ``status``: the command line's spec
options and the inventory -> the template cell spec; figure names (and experiment files) ->
the cells, each with the results folder it lives in. Pure: no host is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.cellspec import CellSpec, SpecError, validate
from engine.methods import UnknownMethodError, resolve_method
from figures.base import Figure
from figures.cells import Cell, base_spec, cell_folder, figure_root
from figures.measured import Axes
from injector.links import LinkError, parse_delay, parse_links
from pmctl.errors import UserError
from pmctl.inventory import Inventory


@dataclass(frozen=True)
class SpecOptions:
    """The spec flags shared by run, plot and status (None = the inventory's, else the
    figure's default)."""

    preset: str | None = None
    stages: int | None = None
    microbatches: int | None = None
    iterations: int | None = None
    fault_at: int | None = None
    delegates: int | None = None


@dataclass(frozen=True)
class Selection:
    """The sweep replacements from the flags (empty = the figure's own)."""

    methods: tuple[str, ...] = ()
    links: tuple[str, ...] = ()  # as typed: "2_3", "0_1,2_3", "none"
    delays: tuple[str, ...] = ()  # as typed: "60", "60ms", "0.06s", "inf"

    def axes(self, stages: int) -> Axes:
        """The figure axes these flags replace, checked against the stage count."""
        methods = []
        for m in self.methods:
            try:
                methods.append(resolve_method(m).id)
            except UnknownMethodError as exc:
                raise UserError(str(exc), "--methods") from exc
        return Axes(
            methods=tuple(dict.fromkeys(methods)),
            link_sets=tuple(dict.fromkeys(parse_link_set(v, stages) for v in self.links)),
            delays_s=tuple(dict.fromkeys(parse_delay_flag(d) for d in self.delays)),
        )


@dataclass(frozen=True)
class PlannedCell:
    """A cell to run and the results root its folder is under."""

    cell: Cell
    root: Path

    @property
    def folder(self) -> Path:
        return cell_folder(self.root, self.cell)


def parse_delay_flag(text: str) -> float:
    """``--delays`` values: milliseconds unless a unit says otherwise; ``inf`` = a crash."""
    try:
        return parse_delay(text, default_unit="ms")
    except LinkError as exc:
        raise UserError(str(exc), "--delays", "use e.g. 60, 60ms, 0.06s or inf") from exc


def parse_link_set(text: str, stages: int) -> tuple[tuple[int, int], ...]:
    """One ``--links`` value (``2_3``, ``0_1,2_3``, ``none``) for a pipeline of ``stages``."""
    try:
        return parse_links(text, stages)
    except LinkError as exc:
        raise UserError(str(exc), "--links", f"use adjacent stages of the {stages} stages, like 0_1 or 0_1,2_3") from exc


def cluster_inventory(inv: Inventory, opts: SpecOptions) -> Inventory:
    """The inventory with ``--stages`` applied (a local cluster grows or shrinks)."""
    return inv.with_stages(opts.stages) if opts.stages is not None else inv


def base_for(inv: Inventory, opts: SpecOptions) -> CellSpec:
    """The template spec of this cluster and these flags: stages, stages per host, device
    and launcher from the inventory; preset and micro-batches from the flags, else the
    inventory's ``[cluster]``, else the figures' default (micro-batches: the preset's)."""
    from pmctl.launchers import cell_fields

    inv = cluster_inventory(inv, opts)
    c = inv.cluster
    try:
        return validate(base_spec(
            **cell_fields(inv), preset=opts.preset or c.preset,
            microbatches=opts.microbatches or c.microbatches, iterations=opts.iterations,
            fault_at=opts.fault_at, delegates=opts.delegates,
        ))
    except SpecError as exc:
        raise UserError(str(exc), "cell spec", "change the flags or the inventory's [cluster]") from exc


def resolve_figures(names: list[str]) -> list[Figure]:
    """``["all"]`` or figure names -> figures in paper order; unknown -> UserError."""
    from figures.registry import UnknownFigureError, figure_names, get_figure

    if not names:
        raise UserError("no figure given", "pmctl run", "name figures (pmctl list), 'all', or an experiment file")
    wanted = figure_names() if [n.lower() for n in names] == ["all"] else names
    out = []
    for n in wanted:
        try:
            out.append(get_figure(n))
        except UnknownFigureError as exc:
            raise UserError(str(exc), "pmctl run", "or give an experiment file PATH.toml") from exc
    return out


def figure_cells(figures: list[Figure], results: Path, base: CellSpec, quick: bool,
                 sel: Selection) -> list[PlannedCell]:
    """The measured cells of ``figures`` after the flags' replacements, de-duplicated by
    folder (fig15's 0 ms point is fig20's cell), each checked as a whole."""
    axes = sel.axes(base.stages)
    root = figure_root(results, base)
    cells: dict[Path, PlannedCell] = {}
    for fig in figures:
        if fig.kind != "measured":
            continue
        for c in fig.cells(base, quick, axes):
            planned = PlannedCell(_checked(c), root)
            known = cells.setdefault(planned.folder, planned)
            if known.cell != c:  # two specs, one folder (e.g. delays equal to 6 digits)
                raise UserError(f"two cells would share {planned.folder}", "pmctl run",
                                "make the delays differ in their first 6 significant digits")
    return list(cells.values())


def _checked(c: Cell) -> Cell:
    try:
        return validate(c)
    except SpecError as exc:
        raise UserError(str(exc), f"cell {c.figure}/{c.method}", "change the flags") from exc
