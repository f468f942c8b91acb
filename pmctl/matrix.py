"""The experiment matrix of ``pmctl run``: figure names -> cells, filtered and overridden by
the command-line flags. Pure: no host is touched."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from engine.methods import resolve_method
from figures.base import Figure
from figures.cells import Cell, cell_folder, links_key
from injector.trace import TraceError, parse_link
from pmctl.errors import UserError


@dataclass(frozen=True)
class Selection:
    """Filters and overrides from the flags (None = keep the figure's value)."""

    methods: tuple[str, ...] = ()
    links: tuple[str, ...] = ()  # links keys: "2_3", "0_1,2_3", "none"
    delays_s: tuple[float, ...] = ()
    iterations: int | None = None
    fault_at: int | None = None
    preset: str | None = None
    delegates: int | None = None


def resolve_figures(names: list[str]) -> list[tuple[str, Figure]]:
    """``["all"]`` or figure names -> (name, Figure) in paper order; unknown -> UserError."""
    from figures.registry import UnknownFigureError, figure_names, get_figure

    if not names:
        raise UserError("no figure given", "pmctl run", "name figures (pmctl list) or 'all'")
    wanted = figure_names() if [n.lower() for n in names] == ["all"] else names
    out = []
    for n in wanted:
        try:
            fig = get_figure(n)
        except UnknownFigureError as exc:
            raise UserError(str(exc), "pmctl run") from exc
        out.append((fig.name, fig))
    return out


def parse_delay(text: str) -> float:
    """``60``, ``60ms``, ``0.06s`` or ``inf`` -> seconds (plain numbers are milliseconds)."""
    t = text.strip().lower()
    try:
        if t == "inf":
            return math.inf
        if t.endswith("ms"):
            return float(t[:-2]) / 1000.0
        if t.endswith("s"):
            return float(t[:-1])
        return float(t) / 1000.0
    except ValueError as exc:
        raise UserError(f"bad delay {text!r}", "--delays", "use e.g. 60, 60ms, 0.06s or inf") from exc


def parse_links(text: str) -> str:
    """Normalises a links flag value (``2-3``, ``2_3,0_1``, ``none``) to the folder key."""
    t = text.strip().lower().replace("-", "_")
    if t in ("", "none"):
        return "none"
    pairs = []
    for part in t.split(","):
        try:
            # The stage count is the inventory's, unknown here: the engine checks it.
            pairs.append(parse_link(part))
        except TraceError as exc:
            raise UserError(f"bad link {part!r}: {exc}", "--links", "use adjacent stages like 2_3 or 0_1,2_3") from exc
    return links_key(tuple(sorted(pairs)))


def select_cells(figures: list[tuple[str, Figure]], quick: bool, sel: Selection) -> list[Cell]:
    """The measured cells of ``figures`` after the filters and overrides, de-duplicated by
    results folder (fig15's 0 ms point is fig20's cell)."""
    methods = {resolve_method(m).id for m in sel.methods}
    cells: dict[Path, Cell] = {}
    for _name, fig in figures:
        if fig.kind != "measured":
            continue
        for c in fig.cells(quick):
            if methods and c.method not in methods:
                continue
            if sel.links and links_key(c.links) not in sel.links:
                continue
            if sel.delays_s and not any(_same(c.delay_s, d) for d in sel.delays_s):
                continue
            c = _override(c, sel)
            cells.setdefault(cell_folder(Path("."), c), c)
    return list(cells.values())


def _same(a: float, b: float) -> bool:
    return (math.isinf(a) and math.isinf(b)) or abs(a - b) < 1e-9


def _override(c: Cell, sel: Selection) -> Cell:
    changes: dict[str, object] = {}
    if sel.iterations is not None:
        changes["iterations"] = sel.iterations
    if sel.fault_at is not None:
        changes["fault_at"] = sel.fault_at
    if sel.preset is not None:
        changes["preset"] = sel.preset
    if sel.delegates is not None:
        changes["delegates"] = sel.delegates
    c = replace(c, **changes) if changes else c
    if c.iterations < 1:
        raise UserError(f"--iters must be >= 1, got {c.iterations}", "pmctl run")
    if not c.healthy and not 0 <= c.fault_at < c.iterations:
        raise UserError(
            f"fault at iteration {c.fault_at} is outside 0..{c.iterations - 1}", "--fault-at",
            "choose an iteration below --iters",
        )
    return c
