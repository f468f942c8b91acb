"""``pmctl simulate``: plan a schedule, replay it under slow links, show the result.

Thin: parses options, calls ``engine.planner.scenario.run_scenario``, prints. No torch; no
matplotlib unless ``--plot``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from engine.planner.costs import parse_costs
from engine.planner.links import parse_link_delays
from engine.planner.scenario import SCHEDULES, Outcome, Scenario, run_scenario
from pmctl.app import app
from pmctl.console import make_console, make_table
from pmctl.errors import UserError


@app.command()
def simulate(
    stages: Annotated[int, typer.Option("--stages", "-s", help="Pipeline stages S.")] = 4,
    microbatches: Annotated[
        int, typer.Option("--microbatches", "-n", help="Micro-batches N.")
    ] = 12,
    tf: Annotated[str, typer.Option(help="F cost in ms: one number, or S numbers a,b,...")] = "10",
    tb: Annotated[str, typer.Option(help="B cost (input gradient) in ms, same form.")] = "10",
    tw: Annotated[str, typer.Option(help="W cost (weight gradient) in ms, same form.")] = "10",
    schedule: Annotated[str, typer.Option(help=f"Schedule: {', '.join(SCHEDULES)}.")] = "zb",
    delay: Annotated[
        Optional[list[str]],
        typer.Option(help="Actual delay on a link in ms, a_b=MS (b = a+1); repeatable."),
    ] = None,
    plan_delay: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Delay the schedule is planned for, in ms, a_b=MS; repeatable. Default: none for zb "
            "and 1f1b, the --delay values for greedy, pipemorph, pipemorph+ and ilp."
        ),
    ] = None,
    time_limit: Annotated[float, typer.Option(help="ILP time limit in seconds.")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plot: Annotated[
        Optional[Path], typer.Option(help="Also draw the timeline to this image (.png or .pdf).")
    ] = None,
    export_csv: Annotated[
        Optional[Path],
        typer.Option(
            help="Also write the planned schedule to this file in torch.distributed.pipelining's "
            "compute-only action CSV (one row per rank, e.g. 0F0,0I0,0W0; our B = I, BW = B), "
            "for _PipelineScheduleRuntime._load_csv."
        ),
    ] = None,
) -> None:
    """Plan a schedule and replay it under per-link delays (the paper's sections 2-3): iteration time,
    bubble rate, warm-up, Delta, peak activations and a timeline. pipemorph+ is the improved
    heuristic (PipeMorph's policy with a searched warm-up, never slower than pipemorph, greedy
    or the healthy ZB plan under the plan delays).
    """
    if stages < 1:
        raise UserError(f"--stages {stages}: need at least 1 stage")
    if microbatches < 1:
        raise UserError(f"--microbatches {microbatches}: need at least 1 micro-batch")
    scenario = Scenario(
        schedule=schedule,
        num_stages=stages,
        num_microbatches=microbatches,
        costs=parse_costs(tf, tb, tw, stages),
        delays=parse_link_delays(delay or [], stages),
        plan_delays=None if plan_delay is None else parse_link_delays(plan_delay, stages),
        time_limit_s=time_limit,
    )
    outcome = run_scenario(scenario)
    if export_csv is not None:
        _export_csv(outcome, export_csv)
    if plot is not None:
        _plot(outcome, plot, schedule)
    if as_json:
        sys.stdout.write(json.dumps(outcome.to_json()) + "\n")
        return
    _print_human(outcome, scenario, plot, export_csv)


def _export_csv(outcome: Outcome, path: Path) -> None:
    """Writes the planned order (not the replay's timing) as torch's action CSV."""
    from engine.planner.export import ExportError, to_torch_csv

    try:
        text = to_torch_csv(outcome.result.schedule)
    except ExportError as exc:
        raise UserError(f"--export-csv: {exc}") from None
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--export-csv {path}: cannot write it ({exc.strerror or exc})") from None


def _plot(outcome: Outcome, path: Path, title: str) -> None:
    """Draws the simulated iteration with the figures' op-timeline drawer (matplotlib is
    imported here only, for ``--plot``)."""
    from figures.simulated import op_records
    from figures.style import pyplot, save
    from figures.timeline import draw_iteration

    r = outcome.result
    S = r.schedule.num_stages
    fig, ax = pyplot().subplots(figsize=(10, 0.7 + 0.6 * S))
    draw_iteration(ax, op_records(r.ops), S)
    ax.set_xlabel("time (ms)")
    ax.set_title(f"{title}: T = {r.iteration_time:g} ms, bubble rate = {r.bubble_rate:.1%}", fontsize=9)
    save(fig, path.parent, path.stem, formats=(path.suffix.lstrip(".") or "png",))


def _print_human(outcome: Outcome, sc: Scenario, plot: Path | None,
                 export_csv: Path | None = None) -> None:
    from engine.planner.timeline_text import STYLES, timeline_rows

    console = make_console()
    err = make_console(stderr=True)
    r = outcome.result
    S = sc.num_stages
    summary = make_table("what", "value", title=f"{sc.schedule}: S={S}, N={sc.num_microbatches}",
                         show_header=False)
    summary.add_row("iteration time", f"{r.iteration_time:g}")
    summary.add_row("bubble rate", f"{r.bubble_rate:.1%}")
    summary.add_row("delays (actual)", _links(sc.delays))
    summary.add_row("delays (planned for)", _links(outcome.plan_delays))
    if outcome.ilp is not None:
        summary.add_row("ILP proven optimal", "yes" if outcome.ilp["proven_optimal"] else "no")
        summary.add_row("ILP lower bound", f"{outcome.ilp['lower_bound']:g}")
        summary.add_row("ILP solve time", f"{outcome.ilp['solve_seconds']:.2f} s")
    console.print(summary)
    per_stage = make_table("stage", "tF/tB/tW", "warm-up", "Delta (to next)", "peak activations")
    for s in range(S):
        c = sc.costs
        per_stage.add_row(
            str(s),
            f"{c.tf[s]:g}/{c.tb[s]:g}/{c.tw[s]:g}",
            str(r.warmup[s]),
            str(r.delta[s]) if s < S - 1 else "-",
            str(r.peak_activations[s]),
        )
    console.print(per_stage)
    width = max(20, min(160, console.width - 10))
    step = r.iteration_time / width
    console.print(Text(f"timeline 0 .. {r.iteration_time:g} (one column = {step:.3g})"))
    for s, row in enumerate(timeline_rows(r.ops, S, r.iteration_time, width)):
        line = Text(f"stage {s:>2} ")
        for ch in row:
            line.append(ch, style=STYLES[ch.upper() if ch != "." else "."])
        console.print(line, no_wrap=True, overflow="crop")
    legend = "F/B/W (X = BW): upper case even micro-batch, lower case odd; . idle"
    console.print(Text(legend, style="dim"))
    if plot is not None:
        console.print(f"timeline plot: {plot}")
    if export_csv is not None:
        console.print(f"torch action CSV: {export_csv}")
    for note in outcome.warnings:
        err.print(f"[yellow]warning:[/yellow] {note}")


def _links(delays: tuple[float, ...]) -> str:
    named = [f"{i}_{i + 1}={c:g}" for i, c in enumerate(delays) if c]
    return ", ".join(named) if named else "healthy"
