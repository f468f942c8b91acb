"""A cell (``engine.cellspec.CellSpec``: one measured run) and where it lives in the results
store: ``<root>/<cell.figure>/<method>/<links>/<delay>/`` (a trace cell:
``<method>/trace/<trace hash>``).

A figure's root is ``results/`` for the paper's default spec and a readable variant folder
for any other (``results/tiny/``, ``results/s8-it12-at4/`` ...), so runs of different specs
never share a folder; an experiment file's cells live in ``results/<name>/``. A figure's
``--quick`` set is a subset of its cells (fewer delays), so it shares their folders. Shared by the figure
registry (which declares cells) and pmctl's orchestration (which runs them).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from engine.cellspec import FULL_FAULT_AT, FULL_ITERATIONS, CellSpec, SpecError, field_default
from engine.presets import PRESETS
from injector.links import Link, delay_key, links_key

Cell = CellSpec
__all__ = ["Cell", "Link", "links_key", "delay_key"]

def base_spec(**fields: Any) -> CellSpec:
    """The template every figure cell is made from: the paper's default spec with ``fields``
    (those not None) overriding it; micro-batches default to the preset's."""
    merged = {k: v for k, v in fields.items() if v is not None}
    preset = merged.get("preset", field_default("preset"))
    if preset not in PRESETS:
        raise SpecError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    merged.setdefault("microbatches", PRESETS[preset].microbatches)
    return CellSpec(**merged)


def variant_name(spec: CellSpec) -> str:
    """The folder of a figure cell's spec below ``results/``: '' for the paper's default,
    else its differences from it, e.g. ``tiny``, ``tiny-s8``, ``s8-mb16-it12-at4``."""
    d = CellSpec()
    tokens = []
    if spec.preset != d.preset:
        tokens.append(spec.preset)
    if spec.stages != d.stages:
        tokens.append(f"s{spec.stages}")
    if spec.stages_per_host != d.stages_per_host:
        tokens.append(f"{spec.stages_per_host}perhost")
    if spec.device != d.device:
        tokens.append(spec.device)
    if spec.microbatches != PRESETS[spec.preset].microbatches:
        tokens.append(f"mb{spec.microbatches}")
    if (spec.iterations, spec.fault_at) != (FULL_ITERATIONS, FULL_FAULT_AT):
        tokens.append(f"it{spec.iterations}-at{spec.fault_at}")
    if spec.delegates != d.delegates:
        tokens.append(f"k{spec.delegates}")
    if spec.pace != d.pace:
        tokens.append("pace-" + spec.pace.replace(",", "_"))
    if spec.launcher != d.launcher:
        tokens.append(spec.launcher)
    if spec.seed != d.seed:
        tokens.append(f"seed{spec.seed}")
    return "-".join(tokens)


def figure_root(results: Path, base: CellSpec) -> Path:
    """Where the figures' cells of spec ``base`` live: ``results/<variant>``."""
    return Path(results) / variant_name(base)


def rel_dir(cell: CellSpec) -> PurePosixPath:
    """Path of the cell below its figure's folder."""
    if cell.trace:
        return PurePosixPath(cell.method, "trace", cell.trace)
    return PurePosixPath(cell.method, links_key(cell.links), delay_key(cell.delay_s))


def cell_label(cell: CellSpec) -> str:
    """``fig15/zb/2_3/0.06``: how a cell is named in tables and progress lines."""
    return f"{cell.figure}/{rel_dir(cell)}"


def cell_folder(results_root: Path, cell: CellSpec) -> Path:
    """Where a cell's results live: ``<root>/<cell.figure>/<method>/<links>/<delay>``."""
    return Path(results_root) / cell.figure / Path(*rel_dir(cell).parts)
