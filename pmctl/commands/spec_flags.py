"""The spec flags that ``run``, ``plot`` and ``status`` share (one definition), and the
inventory they default to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pmctl.errors import UserError
from pmctl.matrix import Selection, SpecOptions

PresetOpt = Annotated[Optional[str], typer.Option("--preset", help="Model preset (default: the inventory's, else cpu-small).")]
StagesOpt = Annotated[Optional[int], typer.Option("--stages", min=2, help="Pipeline stages (a local cluster grows to it; default: the inventory's).")]
MicrobatchesOpt = Annotated[Optional[int], typer.Option("--microbatches", min=1, help="Micro-batches per iteration (default: the inventory's, else the preset's).")]
ItersOpt = Annotated[Optional[int], typer.Option("--iters", min=1, help="Iterations per cell.")]
FaultAtOpt = Annotated[Optional[int], typer.Option("--fault-at", min=0, help="0-based iteration the fault starts.")]
DelegatesOpt = Annotated[Optional[int], typer.Option("--delegates", min=0, help="Delegate workers per direction (0 = automatic).")]
MethodsOpt = Annotated[list[str], typer.Option("--methods", help="These methods instead of the figure's (comma-separated or repeated).")]
LinksOpt = Annotated[list[str], typer.Option("--links", help="These slow-link sets instead of the figure's, e.g. 1_2 or '0_1,2_3' (repeatable; 'none' = no fault).")]
DelaysOpt = Annotated[list[str], typer.Option("--delays", help="These delays instead of the figure's: 60 (ms), 60ms, 0.06s, inf; 0 = no fault (comma-separated).")]
QuickOpt = Annotated[bool, typer.Option("--quick", help="The figures' quick cell sets (fewer delays).")]
ResultsOpt = Annotated[Path, typer.Option("--results", help="Results folder.")]


def csv(values: list[str]) -> list[str]:
    """Comma-separated or repeated flag values, flattened."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def spec_options(preset: str | None, stages: int | None, microbatches: int | None,
                 iters: int | None, fault_at: int | None, delegates: int | None) -> SpecOptions:
    """The flags as ``SpecOptions`` (an unknown preset is refused here, with the list)."""
    if preset is not None:
        from engine.presets import PRESETS

        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r}", "--preset", f"use one of {', '.join(PRESETS)}")
    return SpecOptions(preset, stages, microbatches, iters, fault_at, delegates)


def selection(methods: list[str], links: list[str], delays: list[str]) -> Selection:
    """The sweep flags as a ``Selection`` (``--links`` values keep their commas)."""
    return Selection(tuple(csv(methods)), tuple(v.strip() for v in links), tuple(csv(delays)))


def results_folder(results: Path) -> Path:
    """``--results``, refused when it exists and is not a folder."""
    if results.exists() and not results.is_dir():
        raise UserError("is not a folder", str(results), "give a results folder with --results")
    return results
