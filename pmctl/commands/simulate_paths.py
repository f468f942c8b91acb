"""``pmctl simulate --paths engine``: the schedule timed on the engine's p2p paths
(``engine.planner.engine_paths``), from flags or from a measured cell's own op log."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from engine.planner.engine_paths import (
    EngineCosts,
    EngineIteration,
    Overheads,
    simulate_engine,
)
from engine.planner.scenario import Outcome, Scenario
from pmctl.console import make_console, make_table
from pmctl.errors import UserError

PATH_CHOICES = ("ideal", "engine")


def check_paths(paths: str, cell: Path | None) -> None:
    """One-line errors for a bad ``--paths`` or a ``--cell`` without ``--paths engine``."""
    if paths not in PATH_CHOICES:
        raise UserError(f"--paths {paths}: use ideal (the paper's model) or engine (inline "
                        "head-of-line blocking, delegate workers)")
    if cell is not None and paths != "engine":
        raise UserError(f"--cell {cell}: a cell is predicted on the engine's paths: add "
                        "--paths engine")


def engine_outcome(outcome: Outcome, sc: Scenario, delegates: int, wire_ms: float,
                   step_ms: float) -> dict[str, object]:
    """The planned schedule timed on the engine's paths: inline when ``delegates`` is 0, else
    on K delegate workers per direction; ``wire_ms`` per message, ``step_ms`` per stage."""
    if delegates < 0 or not (wire_ms >= 0 and math.isfinite(wire_ms)) or not (
            step_ms >= 0 and math.isfinite(step_ms)):
        raise UserError("--delegates, --wire-ms and --step-ms must be >= 0 (0 delegates = "
                        "the inline path)")
    S = sc.num_stages
    zero = (0.0,) * S
    oh = Overheads(zero, zero, zero, (step_ms,) * S, zero, wire_ms, 0.0, wire_ms)
    costs = sc.costs if sc.slow is None else sc.costs.slowed(sc.slow)
    it = EngineIteration(outcome.result.schedule, tuple(sc.delays),
                         "delegate" if delegates else "inline", max(1, delegates))
    res = simulate_engine(it, EngineCosts(costs, oh))
    return {"paths": "engine", "path": it.path, "delegates": delegates,
            "iteration_time": res.iteration_ms, "ideal_iteration_time": outcome.result.iteration_time,
            "stage_end": res.stage_end_ms, "overheads": oh.to_json()}


def show_engine(result: dict[str, object], as_json: bool) -> None:
    """Prints ``engine_outcome``'s result."""
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = make_table("what", "value", title="engine paths", show_header=False)
    k = result["delegates"]
    table.add_row("path", f"{result['path']}" + (f" ({k} workers per direction)" if k else ""))
    table.add_row("iteration time (engine)", f"{result['iteration_time']:g}")
    table.add_row("iteration time (ideal)", f"{result['ideal_iteration_time']:g}")
    make_console().print(table)


def show_cell(cell_dir: Path, delegates: int, as_json: bool) -> None:
    """The prediction of a measured cell from its own op log, per averaged iteration."""
    from figures.prediction import predict_cell  # reads op logs; no torch, no matplotlib

    if not cell_dir.is_dir() or not any(cell_dir.glob("stage*.jsonl")):
        raise UserError(f"--cell {cell_dir}: no stage*.jsonl op logs there (give a cell folder "
                        "such as results/fig15/zb/2_3/0.06)")
    p = predict_cell(cell_dir, delegates)
    if p is None:
        raise UserError(f"--cell {cell_dir}: no complete iteration with its schedule to replay "
                        "(a failed or cut-off run: rerun the cell)")
    if as_json:
        sys.stdout.write(json.dumps({
            "paths": "engine", "cell": str(cell_dir), "predicted_s": p.predicted_s,
            "measured_s": p.measured_s, "error": p.error, "replayed_s": p.replayed_s,
            "delegates": p.delegates if p.uses_delegates else 0,
            "iterations": [{"iteration": i, "measured_ms": p.measured_ms[i],
                            "predicted_ms": p.predicted_ms[i], "replayed_ms": p.replayed_ms[i]}
                           for i in sorted(p.measured_ms)],
            "costs": {**p.costs.compute.to_json(), "bw": p.costs.bw,
                      "overheads": p.costs.overheads.to_json()},
        }) + "\n")
        return
    table = make_table("iteration", "measured ms", "predicted ms", "replayed ms",
                       title=f"{cell_dir}: engine-path prediction")
    for i in sorted(p.measured_ms):
        table.add_row(str(i), f"{p.measured_ms[i]:.1f}", f"{p.predicted_ms[i]:.1f}",
                      f"{p.replayed_ms[i]:.1f}")
    table.add_row("mean", f"{p.measured_s * 1000:.1f}", f"{p.predicted_s * 1000:.1f}",
                  f"{p.replayed_s * 1000:.1f}")
    console = make_console()
    console.print(table)
    console.print(f"error {p.error:+.1%} (replayed: each iteration with its own op durations)")
