"""User-defined experiments: a TOML file -> cells (``pmctl run PATH.toml``, ``pmctl plot
PATH.toml``).

    name = "eight-stages"            # results/<name>/...
    preset = "tiny"                  # optional: the inventory's
    stages = 8                       # optional: the inventory's
    microbatches = 16                # optional: the preset's
    iterations = 8
    fault_at = 3
    methods = ["zb", "pipemorph"]
    links = ["6_7", "0_1,6_7"]        # each entry is one cell's slow-link set
    delays_ms = [0, 60]
    traces = ["moving.trace"]        # paths relative to this file

A spec value comes from the command line's flags when given, else the file, else the inventory
(``pmctl.matrix.base_for``), else the defaults. Every problem is one ``UserError`` naming the
file and the key, raised before anything runs (the typed reads of single keys:
``pmctl.experiment_values``). Pure: reads the file and its traces only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.cellspec import SpecError, validate
from engine.methods import UnknownMethodError, resolve_method
from engine.presets import PRESETS
from figures.cells import Cell, rel_dir
from injector.links import LinkError, links_key, parse_links, same_delay
from injector.trace import TraceError, parse_trace, trace_hash
from pmctl.errors import UserError
from pmctl.experiment_values import FileValues
from pmctl.inventory import Inventory
from pmctl.matrix import PlannedCell, Selection, SpecOptions, base_for

SUFFIX = ".toml"
# The spec keys a file may set (those also on the command line are overridden by the flag).
SPEC_KEYS = ("preset", "stages", "microbatches", "iterations", "fault_at", "delegates", "pace", "seed")
SWEEP_KEYS = ("methods", "links", "delays_ms", "traces")
ALLOWED_KEYS = ("name", *SPEC_KEYS, *SWEEP_KEYS)
# Keys that belong to the inventory, not to an experiment: a pointed hint instead of the list.
_INVENTORY_KEYS = ("stages_per_host", "device", "launcher")
# The flag that overrides a file key.
_FLAGS = {"preset": "--preset", "stages": "--stages", "microbatches": "--microbatches",
          "iterations": "--iters", "fault_at": "--fault-at", "delegates": "--delegates"}
# Minimum of each integer key.
_INT_MIN = {"stages": 2, "microbatches": 1, "iterations": 1, "fault_at": 0, "delegates": 0, "seed": 0}
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def is_experiment_file(target: str) -> bool:
    """Whether a ``pmctl run`` / ``plot`` target names an experiment file (``*.toml``)."""
    return str(target).lower().endswith(SUFFIX)


@dataclass(frozen=True)
class Experiment:
    """A validated experiment file: its cells (``figure`` = the name), in run order."""

    name: str
    path: Path
    cells: list[Cell]
    # trace hash -> the trace file as the experiment file names it (plot labels)
    trace_names: Mapping[str, str] = field(default_factory=dict)

    @property
    def stages(self) -> int:
        """The pipeline stages of its cells (the cluster must run that many)."""
        return self.cells[0].stages

    def planned(self, results: Path) -> list[PlannedCell]:
        """Its cells under ``results`` (they live in ``results/<name>/...``)."""
        return [PlannedCell(c, Path(results)) for c in self.cells]


def load_experiment(path: Path, inv: Inventory, opts: SpecOptions, sel: Selection) -> Experiment:
    """Reads and validates an experiment file for the cluster ``inv`` with the command line's
    spec flags ``opts`` (they win over the file) and sweep flags ``sel`` (they filter the
    file's cells); raises ``UserError`` naming the file and the key."""
    return _Loader(Path(path), inv, opts, sel).load()


def plot_experiment(exp: Experiment, results: Path) -> Any:
    """Draws ``results/<name>/<name>.png`` and ``.pdf`` and writes ``<name>.json`` from the
    experiment's cells (missing ones drawn as n/a and listed); returns the ``FigureReport``."""
    from figures.cells import cell_folder
    from figures.experiment_plot import plot_cells
    from figures.timeline import ensure_timelines

    ensure_timelines([cell_folder(results, c) for c in exp.cells])
    return plot_cells(exp.name, Path(results), exp.cells, dict(exp.trace_names))


class _Loader(FileValues):
    """One file's checks across keys, each raising the same shaped one-line error (the typed
    reads of single keys, ``string``/``integer``/``strings``/``delays_ms``: ``FileValues``)."""

    def __init__(self, path: Path, inv: Inventory, opts: SpecOptions, sel: Selection) -> None:
        super().__init__(path)
        self.inv, self.opts, self.sel = inv, opts, sel

    # -- the file ---------------------------------------------------------------------------

    def load(self) -> Experiment:
        self.read()
        self._check_keys()
        name = self._name()
        base = self._base(name)
        methods = self._methods()
        link_sets = self._links(base.stages)
        delays = self.delays_ms(any(link_sets))
        traces = self._traces(base.stages, base.iterations)
        cells: dict[str, Cell] = {}
        if not traces and not delays:
            delays = [0.0]  # a file of methods only: their healthy cells
        for m in methods:
            for links in link_sets or [()]:
                for d in delays:
                    healthy = not links or d == 0
                    cell = base.with_fault(name, m, () if healthy else links, 0.0 if healthy else d)
                    cells.setdefault(str(rel_dir(cell)), cell)
            for text, _ in traces:
                cell = replace(base.with_fault(name, m), trace=trace_hash(text), trace_text=text)
                cells.setdefault(str(rel_dir(cell)), cell)
        checked = [self._checked(c) for c in cells.values()]
        return Experiment(name, self.path, self._select(checked, base.stages),
                          {trace_hash(text): label for text, label in traces})

    def _check_keys(self) -> None:
        for key in self.data:
            if key in ALLOWED_KEYS:
                continue
            if key in _INVENTORY_KEYS:
                raise self.error(key, "unknown key: it comes from the inventory",
                                 "remove it and set it in the inventory's [cluster] or hosts")
            raise self.error(key, "unknown key", f"remove it; allowed: {', '.join(ALLOWED_KEYS)}")
        for key in ("name", "methods"):
            if key not in self.data:
                example = 'name = "my-experiment"' if key == "name" else 'methods = ["zb", "pipemorph"]'
                raise self.error(key, "missing", f"add {example}")

    def _name(self) -> str:
        from figures.registry import QUICK_DIR, figure_names

        name = self.string("name")
        if not _NAME_RE.fullmatch(name):
            raise self.error("name", f"bad name {name!r}: it becomes the results folder",
                             "use letters, digits, - _ . (not starting with . or -)")
        if name in figure_names() or name == QUICK_DIR:
            raise self.error("name", f"{name!r} is a figure's results folder", "choose another name")
        return name

    # -- the spec ---------------------------------------------------------------------------

    def _given(self, key: str) -> Any:
        """The value of spec key ``key``: the flag's, else the file's (None = neither)."""
        flag = getattr(self.opts, key, None)
        return flag if flag is not None else self.data.get(key)

    def _where(self, key: str) -> str:
        """The key as named in an error: from its flag when the flag set it."""
        if getattr(self.opts, key, None) is not None:
            return f"{key} (from {_FLAGS[key]})"
        return key

    def _base(self, name: str) -> Cell:
        for key in SPEC_KEYS:
            if key in self.data:
                if key in _INT_MIN:
                    self.integer(key, _INT_MIN[key])
                else:
                    self.string(key)
        preset = self._given("preset")
        if preset is not None and preset not in PRESETS:
            raise self.error(self._where("preset"), f"unknown preset {preset!r}", f"use one of {', '.join(PRESETS)}")
        stages = self._given("stages")
        inv = self.inv
        if stages is not None:
            try:
                inv = inv.with_stages(stages)
            except UserError as exc:
                hint = (exc.hint or "") if self.opts.stages is not None else (
                    "change the inventory's hosts (or their gpus), or remove stages from the file"
                    if inv.cluster.transport != "local" else exc.hint or "")
                raise self.error(self._where("stages"), f"stages = {stages}: {exc.what.split(': ', 1)[-1]}",
                                 hint) from exc
        merged = SpecOptions(**{k: self._given(k) for k in _FLAGS})
        try:
            base = base_for(inv, merged)
        except UserError as exc:
            raise self.error(self._key_in(exc.what), exc.what,
                             "change the file, the flags or the inventory's [cluster]") from exc
        extra = {k: self.data[k] for k in ("pace", "seed") if k in self.data}
        base = replace(base, figure=name, **extra)
        faulty = bool(self.data.get("traces")) or any(d != 0 for d in self.data.get("delays_ms") or [])
        if faulty and base.fault_at >= base.iterations:  # no fault, no fault start to check
            key = "fault_at" if self._given("fault_at") is not None else "iterations"
            raise self.error(self._where(key),
                             f"fault_at = {base.fault_at} is outside iterations 0..{base.iterations - 1}",
                             "set fault_at below iterations")
        try:
            return validate(base)
        except SpecError as exc:
            raise self.error(self._key_in(str(exc)), str(exc), "change the file or the flags") from exc

    def _key_in(self, message: str) -> str:
        """The spec key a spec error is about: the first set one it names (else 'spec')."""
        text = message.lower()
        for key in SPEC_KEYS:
            if self._given(key) is not None and (key in text or key.replace("_", " ") in text):
                return self._where(key)
        return next((k for k in SPEC_KEYS if k in text or k.replace("_", " ") in text), "spec")

    # -- the sweep --------------------------------------------------------------------------

    def _methods(self) -> list[str]:
        out = []
        for i, m in enumerate(self.strings("methods", required=True)):
            try:
                out.append(resolve_method(m).id)
            except UnknownMethodError as exc:
                raise self.error(f"methods[{i}]", str(exc), "fix the method name") from exc
        return list(dict.fromkeys(out))

    def _links(self, stages: int) -> list[tuple[tuple[int, int], ...]]:
        out = []
        for i, text in enumerate(self.strings("links")):
            try:
                out.append(parse_links(text, stages))
            except LinkError as exc:
                raise self.error(f"links[{i}]", str(exc),
                                 f"use adjacent stages of the {stages} stages, like 0_1 or 0_1,{stages - 2}_{stages - 1}") from exc
        return list(dict.fromkeys(out))

    def _traces(self, stages: int, iterations: int) -> list[tuple[str, str]]:
        """(text, name as written) of each trace file, parsed for ``stages`` stages."""
        out: dict[str, tuple[str, str]] = {}
        for i, rel in enumerate(self.strings("traces")):
            key = f"traces[{i}]"
            p = Path(rel).expanduser()
            p = p if p.is_absolute() else self.path.parent / p
            try:
                text = p.read_text(encoding="utf-8")
            except FileNotFoundError as exc:
                raise self.error(key, f"trace file {p} not found",
                                 "give a path relative to the experiment file") from exc
            except (OSError, UnicodeDecodeError) as exc:
                raise self.error(key, f"cannot read trace file {p} ({exc})", "check the file") from exc
            try:
                trace = parse_trace(text, stages)
            except TraceError as exc:
                raise self.error(key, f"{rel}: {exc}", "fix the trace line") from exc
            if not len(trace):
                raise self.error(key, f"{rel}: the trace has no lines", "add e.g. 3;2_3;0.06")
            if trace.kind == "iteration" and trace.faults[0].since_iteration >= iterations:
                raise self.error(
                    key, f"{rel}: the first change is at iteration {trace.faults[0].since_iteration}, "
                    f"after the last of {iterations} iterations", "raise iterations or move the trace")
            out.setdefault(trace_hash(text), (text, rel))
        return list(out.values())

    # -- the cells --------------------------------------------------------------------------

    def _checked(self, cell: Cell) -> Cell:
        try:
            return validate(cell)
        except SpecError as exc:
            where = "traces" if cell.trace else "links" if cell.links else self._key_in(str(exc))
            raise self.error(where, f"cell {cell.method}/{rel_dir(cell)}: {exc}", "change the file") from exc

    def _select(self, cells: list[Cell], stages: int) -> list[Cell]:
        """The cells the command line's ``--methods/--links/--delays`` keep."""
        axes = self.sel.axes(stages)
        out = []
        for c in cells:
            if axes.methods and c.method not in axes.methods:
                continue
            if axes.link_sets and (c.trace or c.links not in axes.link_sets and not (c.healthy and () in axes.link_sets)):
                continue
            if axes.delays_s and (c.trace or not any(same_delay(c.delay_s, d) for d in axes.delays_s)):
                continue
            out.append(c)
        if not out:
            given = ", ".join(f for f, v in (("--methods", axes.methods), ("--links", axes.link_sets),
                                             ("--delays", axes.delays_s)) if v)
            raise UserError(f"{given} leave none of its {len(cells)} cells", str(self.path),
                            "choose values the file has: " + _summary(cells))
        return out

def _summary(cells: list[Cell]) -> str:
    methods = ", ".join(dict.fromkeys(c.method for c in cells))
    links = ", ".join(dict.fromkeys(links_key(c.links) for c in cells if not c.trace))
    delays = ", ".join(dict.fromkeys(
        "inf" if math.isinf(c.delay_s) else f"{c.delay_s * 1000:g}" for c in cells if not c.trace))
    return f"methods {methods}; links {links or '-'}; delays {delays or '-'} ms"

