"""``pmctl trace-gen``: write a dynamic-straggler trace (``injector.trace_gen``). Thin: parse,
generate, print or write; a bad setting is one line and exit 2. No torch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from pmctl.app import app
from pmctl.errors import UserError


@app.command("trace-gen")
def trace_gen(
    seed: Annotated[int, typer.Option(help="Random seed: the same settings give the same trace.")] = 2025,
    duration: Annotated[float, typer.Option(help="Seconds of trace: events start before this.")] = 12.0,
    stages: Annotated[int, typer.Option(help="Pipeline stages (the links are 0_1 .. S-2_S-1).")] = 4,
    links: Annotated[str, typer.Option(help="Candidate links, e.g. 0_1,2_3 (default: every link).")] = "",
    max_links: Annotated[int, typer.Option(help="Links per event at most (1..; 0 = all candidates).")] = 0,
    delay_ms: Annotated[float, typer.Option(help="Mean per-link delay in ms.")] = 30.0,
    delay_std_ms: Annotated[float, typer.Option(help="Standard deviation of the delay in ms.")] = 10.0,
    max_delay_ms: Annotated[Optional[float], typer.Option(help="Clip drawn delays to at most this (ms); the lower clip is 0.")] = None,
    min_gap: Annotated[float, typer.Option(help="Seconds: the next event follows after U(MIN, 2 MIN).")] = 2.0,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the trace here (default: stdout).")] = None,
) -> None:
    """Generate a time-based trace of moving stragglers (the paper's dynamic experiment): each
    event picks 1..MAX_LINKS links and gives each a delay ~ N(DELAY_MS, DELAY_STD_MS) clipped at
    0; use it in an experiment file's `traces` or as the `dynamic` figure's trace."""
    from injector.trace_gen import TraceGenError, TraceGenSpec, trace_text

    spec = TraceGenSpec(seed, duration, stages, links, max_links, delay_ms, delay_std_ms,
                        math.inf if max_delay_ms is None else max_delay_ms, min_gap)
    try:
        text = trace_text(spec)
    except TraceGenError as exc:
        raise UserError(str(exc), "pmctl trace-gen", "see pmctl trace-gen --help") from None
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the trace ({exc.strerror or exc})", str(output)) from None
    typer.echo(f"trace: {output} ({len(text.splitlines()) - 2} events)", err=True)
