"""The dynamic figure: its cells (the shipped trace), the re-plan lag measured from iteration
records, and the plot's JSON from synthetic op logs whose plans follow the trace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fig_synthetic import write_cell

from engine.oplog import OpLogWriter
from figures.cells import base_spec, cell_folder
from figures.dynamic import TRACE_FILE
from figures.registry import get_figure, plot_figure
from figures.replan_lag import replan_changes
from figures.run_series import read_series
from injector.trace import parse_trace, trace_hash
from tests.orchestration.support import pmctl_env

REPO = Path(__file__).resolve().parents[2]
S, FAULT_AT, ITERS = 4, 2, 14


def test_cells_run_the_shipped_trace() -> None:
    full = get_figure("dynamic").cells(base_spec())
    quick = get_figure("dynamic").cells(base_spec(), True)
    assert [c.method for c in full] == ["zb", "pipemorph-cpu", "pipemorph"]
    assert set(quick) <= set(full) and [c.method for c in quick] == ["zb", "pipemorph"]
    text = TRACE_FILE.read_text(encoding="utf-8")
    assert all(c.trace_text == text and c.trace == trace_hash(text) for c in full)
    assert full[0].iterations == FAULT_AT + 12 and full[0].fault_at == FAULT_AT


def write_run(path: Path, iteration_s: float, adapts: bool, lag: int = 1) -> None:
    """Op logs of a 4-stage run under the shipped trace: each iteration takes ``iteration_s``,
    takes the snapshot in force at its start, and (``adapts``) plans for the delays that were
    in force ``lag`` iterations earlier, as the engine logs it."""
    trace = parse_trace(TRACE_FILE.read_text(encoding="utf-8"), S)
    writers = [OpLogWriter(path / f"stage{s}.jsonl", s) for s in range(S)]
    in_force: list[tuple[int, list[float]]] = []
    for it in range(ITERS):
        t = (it - FAULT_AT) * iteration_s
        snap = trace.snapshot_at(t) if it >= FAULT_AT else None
        delays = [round(d * 1000, 3) for d in snap.link_delays_s(S)] if snap else [0.0] * (S - 1)
        in_force.append((snap.epoch if snap else 0, delays))
        basis = in_force[it - lag][1] if it >= lag else [0.0] * (S - 1)
        planned = basis if adapts and any(basis) else None
        fault = {"injected": snap.to_json() if snap else {"epoch": 0}, "planned_for_ms": planned,
                 **({"trace_s": t} if snap else {})}
        for s, w in enumerate(writers):
            w.iteration(it, schedule=[], fault=fault, costs={}, link_delays_ms=delays, offload=bool(snap))
            w.op(it, "F", 0, 0.0, iteration_s * 1000 - 5.0 * s, "inline")
    for w in writers:
        w.close()


def test_replan_lag_is_measured_per_change(tmp_path: Path) -> None:
    write_run(tmp_path / "pm", 1.0, adapts=True)
    changes = replan_changes(read_series(tmp_path / "pm"))
    # snapshots at 0, 2.765, 5.002, 7.058, 10.63 s; an iteration starts every second from it 2
    assert [(c.epoch, c.seen_at) for c in changes] == [(1, 2), (2, 5), (3, 8), (4, 10), (5, 13)]
    assert [c.lag for c in changes] == [1, 1, 1, 1, None]  # the last one: the run ended first
    write_run(tmp_path / "slow", 1.0, adapts=True, lag=2)
    assert [c.lag for c in replan_changes(read_series(tmp_path / "slow"))] == [2, 2, None, 2, None]  # e3 lasts 2 iterations
    write_run(tmp_path / "zb", 1.0, adapts=False)
    assert all(c.lag is None for c in replan_changes(read_series(tmp_path / "zb")))


@pytest.fixture(scope="module")
def plotted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("results")
    zb, pm = get_figure("dynamic").cells(base_spec(), True)
    write_run(cell_folder(root, zb), 1.4, adapts=False)
    write_cell(root, zb, None, with_timeline=True)
    write_run(cell_folder(root, pm), 1.0, adapts=True)
    write_cell(root, pm, None, with_timeline=True)
    return root, plot_figure("dynamic", root, quick=True)


def test_plot_json_has_times_over_the_trace_clock_and_the_lags(plotted) -> None:
    root, report = plotted
    assert (root / "dynamic" / "dynamic.png").stat().st_size > 0
    data = json.loads((root / "dynamic" / "dynamic.json").read_text())
    assert data["cells"] == report.cells and data["trace"].count("\n") == 5
    zb, pm = report.cells
    assert zb["changes"] is None and zb["max_lag_iterations"] is None  # ZB never re-plans
    assert zb["per_iteration_s"] == pytest.approx([1.4] * ITERS)
    assert zb["trace_s"][FAULT_AT:] == pytest.approx([1.4 * k for k in range(ITERS - FAULT_AT)])
    assert zb["trace_s"][0] == pytest.approx(-2.8)  # before the trace: the wall clock, shifted
    assert pm["max_lag_iterations"] == 1
    assert [c["lag_iterations"] for c in pm["changes"]] == [1, 1, 1, 1, None]
    assert pm["changes"][1]["at_s"] == 2.765 and pm["changes"][1]["link_delays_ms"] == [35.1, 0.0, 0.0]
    assert pm["iteration_time_s"] == pytest.approx(1.0)
    assert any(n.startswith("PipeMorph re-planned 4 of 5 changes it saw, lags (iterations) [1, 1, 1, 1], max 1")
               for n in report.notes)
    assert report.rows[1][4:6] == ["4", "1"] and report.rows[0][4] == "never"


@pytest.mark.slow
def test_dry_run_lists_the_trace_cells(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pmctl", "run", "dynamic", "--dry-run", "--json",
                        "--results", str(tmp_path / "r")], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env=pmctl_env(tmp_path))
    assert r.returncode == 0, r.stderr
    plans = [json.loads(line) for line in r.stdout.splitlines() if json.loads(line)["type"] == "plan"]
    h = trace_hash(TRACE_FILE.read_text(encoding="utf-8"))
    assert [p["folder"] for p in plans] == [str(tmp_path / f"r/dynamic/{m}/trace/{h}")
                                            for m in ("zb", "pipemorph-cpu", "pipemorph")]
    assert all(p["spec"]["iterations"] == 14 and p["spec"]["trace"] == h for p in plans)
