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

from engine.planner.costs import parse_costs, parse_slow_stages
from engine.planner.ir import Schedule
from engine.planner.links import parse_link_delays
from engine.planner.scenario import SCHEDULES, Outcome, Scenario, run_scenario
from engine.planner.schedule_file import read_schedule_file
from pmctl.app import app
from pmctl.commands.simulate_paths import check_paths, engine_outcome, show_cell, show_engine
from pmctl.console import make_console, make_table
from pmctl.errors import UserError


@app.command()
def simulate(
    stages: Annotated[
        Optional[int],
        typer.Option("--stages", "-s", help="Pipeline stages S (default 4, or the schedule file's)."),
    ] = None,
    microbatches: Annotated[
        Optional[int],
        typer.Option("--microbatches", "-n", help="Micro-batches N (default 12, or the file's)."),
    ] = None,
    tf: Annotated[str, typer.Option(help="F cost in ms: one number, or S numbers a,b,...")] = "10",
    tb: Annotated[str, typer.Option(help="B cost (input gradient) in ms, same form.")] = "10",
    tw: Annotated[str, typer.Option(help="W cost (weight gradient) in ms, same form.")] = "10",
    schedule: Annotated[
        Optional[str], typer.Option(help=f"Schedule: {', '.join(SCHEDULES)} (default zb).")
    ] = None,
    schedule_file: Annotated[
        Optional[Path],
        typer.Option(
            help="Replay this plan instead of generating one: one line of ops per stage, as the "
            "schedule IR prints it (F0 F1 B0 W0 ...; BW3 = full backward; # comments)."
        ),
    ] = None,
    slow_stage: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Compute straggler: every op of stage S takes FACTOR times its cost, S=FACTOR "
            "(2=1.5); repeatable."
        ),
    ] = None,
    activation_cap: Annotated[
        Optional[int],
        typer.Option(
            help="At most K micro-batches of activations in flight per stage (F +1, B and W "
            "-0.5 each, BW -1); every schedule plans under it, a --schedule-file is checked."
        ),
    ] = None,
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
    paths: Annotated[
        str,
        typer.Option(help="ideal: the paper's model (a message arrives the delay after its op); "
                     "engine: the engine's paths (inline sends block the sender for the delay, "
                     "delegates carry K messages at once)."),
    ] = "ideal",
    delegates: Annotated[
        int, typer.Option(help="--paths engine: delegate workers per direction; 0 = inline.")
    ] = 0,
    wire_ms: Annotated[float, typer.Option(help="--paths engine: latency per message (ms).")] = 0.0,
    step_ms: Annotated[float, typer.Option(help="--paths engine: optimizer step per stage (ms).")] = 0.0,
    cell: Annotated[
        Optional[Path],
        typer.Option(help="--paths engine: predict this measured cell folder from its own op "
                     "log (costs, delays, path, schedule) instead of the flags."),
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
    """Plan a schedule and replay it under per-link delays and compute stragglers (the paper's
    sections 2-3 and 7): iteration time, bubble rate, warm-up, Delta, peak activations and a
    timeline. pipemorph+ is the improved heuristic (PipeMorph's policy with a searched warm-up,
    never slower than pipemorph, greedy or the healthy ZB plan under the plan delays); gpipe
    runs all forwards, then all B, then all W on each stage.
    """
    check_paths(paths, cell)
    if cell is not None:
        show_cell(cell, delegates, as_json)
        return
    given = None
    if schedule_file is not None:
        given = _given_schedule(schedule_file, schedule, plan_delay, stages, microbatches)
        stages, microbatches = given.num_stages, given.num_microbatches
    stages = 4 if stages is None else stages
    microbatches = 12 if microbatches is None else microbatches
    if stages < 1:
        raise UserError(f"--stages {stages}: need at least 1 stage")
    if microbatches < 1:
        raise UserError(f"--microbatches {microbatches}: need at least 1 micro-batch")
    if activation_cap is not None and activation_cap < 1:
        raise UserError(
            f"--activation-cap {activation_cap}: must be >= 1 (a stage needs room for one "
            "micro-batch to run at all)"
        )
    name = str(schedule_file) if schedule_file is not None else schedule or "zb"
    scenario = Scenario(
        schedule=name,
        num_stages=stages,
        num_microbatches=microbatches,
        costs=parse_costs(tf, tb, tw, stages),
        delays=parse_link_delays(delay or [], stages),
        plan_delays=None if plan_delay is None else parse_link_delays(plan_delay, stages),
        time_limit_s=time_limit,
        slow=parse_slow_stages(slow_stage, stages) if slow_stage else None,
        activation_cap=activation_cap,
        given=given,
    )
    outcome = run_scenario(scenario)
    if paths == "engine":
        show_engine(engine_outcome(outcome, scenario, delegates, wire_ms, step_ms), as_json)
        return
    if export_csv is not None:
        _export_csv(outcome, export_csv)
    if plot is not None:
        _plot(outcome, plot, name)
    if as_json:
        sys.stdout.write(json.dumps(outcome.to_json()) + "\n")
        return
    _print_human(outcome, scenario, plot, export_csv)


def _given_schedule(
    path: Path, schedule: str | None, plan_delay: list[str] | None, stages: int | None,
    microbatches: int | None,
) -> Schedule:
    """The plan in ``path``, after refusing the options that contradict replaying it."""
    if schedule is not None:
        raise UserError(f"--schedule {schedule} and --schedule-file {path}: give one of them")
    if plan_delay is not None:
        raise UserError(
            f"--plan-delay with --schedule-file {path}: a given plan is replayed as is, not "
            "planned (drop --plan-delay)"
        )
    given = read_schedule_file(path)
    for flag, asked, found, what in (
        ("--stages", stages, given.num_stages, "stage lines"),
        ("--microbatches", microbatches, given.num_microbatches, "micro-batches"),
    ):
        if asked is not None and asked != found:
            raise UserError(f"{flag} {asked}: {path} has {found} {what} (drop {flag} or fix the file)")
    return given


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
    summary.add_row("delays (planned for)", "-" if sc.given is not None else _links(outcome.plan_delays))
    summary.add_row("slow stages", _slow(sc.slow))
    summary.add_row("activation cap", "none" if sc.activation_cap is None else str(sc.activation_cap))
    if outcome.ilp is not None:
        summary.add_row("ILP proven optimal", "yes" if outcome.ilp["proven_optimal"] else "no")
        summary.add_row("ILP lower bound", f"{outcome.ilp['lower_bound']:g}")
        summary.add_row("ILP solve time", f"{outcome.ilp['solve_seconds']:.2f} s")
    console.print(summary)
    per_stage = make_table("stage", "tF/tB/tW", "warm-up", "Delta (to next)",
                           "peak in flight", "peak F..W")
    c = sc.costs if sc.slow is None else sc.costs.slowed(sc.slow)
    for s in range(S):
        slow = "" if sc.slow is None or sc.slow[s] == 1 else f" (x{sc.slow[s]:g})"
        per_stage.add_row(
            str(s),
            f"{c.tf[s]:g}/{c.tb[s]:g}/{c.tw[s]:g}{slow}",
            str(r.warmup[s]),
            str(r.delta[s]) if s < S - 1 else "-",
            f"{r.peak_inflight[s]:g}",
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
    console.print(Text(
        "peak in flight: F +1, B and W -0.5 each, BW -1 (the cap's measure); "
        "peak F..W: micro-batches between their F and their W",
        style="dim",
    ))
    if plot is not None:
        console.print(f"timeline plot: {plot}")
    if export_csv is not None:
        console.print(f"torch action CSV: {export_csv}")
    for note in outcome.warnings:
        err.print(f"[yellow]warning:[/yellow] {note}")


def _slow(factors: tuple[float, ...] | None) -> str:
    named = [f"{s} x{f:g}" for s, f in enumerate(factors or ()) if f != 1]
    return ", ".join(named) if named else "none"


def _links(delays: tuple[float, ...]) -> str:
    named = [f"{i}_{i + 1}={c:g}" for i, c in enumerate(delays) if c]
    return ", ".join(named) if named else "healthy"
