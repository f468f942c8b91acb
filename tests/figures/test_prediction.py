"""Cell predictions (figures.prediction): in the plot JSON, exact on a log the model itself
wrote, and within a loose bound on a real tiny engine run (the 5% goal is the bench's)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from engine.oplog import OpLogWriter
from engine.planner.costs import StageCosts
from engine.planner.engine_paths import EngineCosts, EngineIteration, Overheads, simulate_engine
from engine.planner.generators import generate
from figures.cells import base_spec, cell_folder
from figures.prediction import predict_cell
from figures.registry import get_figure
from tests.figures.fig_synthetic import write_cell, write_fig15_quick
from tests.jobs import run_job

S, N = 4, 6
COSTS = StageCosts.uniform(S, 30, 36, 18)


def write_model_log(path: Path, delays: tuple[float, ...], path_kind: str, iterations: int = 6) -> float:
    """Op logs of ``iterations`` iterations exactly as the model times them (no overhead);
    returns the iteration time (ms)."""
    sched = generate("zb", S, N, COSTS, (0,) * (S - 1))
    res = simulate_engine(EngineIteration(sched, delays, path_kind, 2),
                          EngineCosts(COSTS, Overheads.none(S)))
    writers = [OpLogWriter(path / f"stage{s}.jsonl", s) for s in range(S)]
    arrivals = {}
    for e in res.events:
        if e.what.startswith("SEND"):
            direction, mb = e.what[5], int(e.what[6:])
            peer = e.stage + 1 if direction == "F" else e.stage - 1
            arrivals[(peer, direction, mb)] = e.end
    for it in range(iterations):
        free = [0.0] * S
        for e in sorted(res.events, key=lambda e: e.start):
            s, kind = e.stage, e.what.rstrip("0123456789")
            mb = int(e.what[len(kind):])
            if kind.startswith("SEND"):
                direction = kind[-1]
                peer = s + 1 if direction == "F" else s - 1
                delay = delays[min(s, peer)]
                end = e.start + delay if path_kind == "inline" else e.end
                writers[s].op(it, kind, mb, e.start, end, path_kind, peer=peer, delay_ms=delay)
                if path_kind == "inline":
                    free[s] = end
                continue
            wanted = "F" if kind == "F" and s > 0 else "B" if kind == "B" and s < S - 1 else None
            if wanted:
                src = s - 1 if wanted == "F" else s + 1
                writers[s].op(it, f"RECV_{wanted}", mb, free[s], e.start, path_kind, peer=src,
                              delay_ms=delays[min(s, src)], sent_ms=0.0)
            writers[s].op(it, kind, mb, e.start, e.end, path_kind)
            free[s] = e.end
        for w in writers:
            w.iteration(it, schedule=sched.to_lists(), fault={}, offload=path_kind == "delegate",
                        link_delays_ms=list(delays))
    for w in writers:
        w.close()
    return res.iteration_ms


@pytest.mark.parametrize("path_kind", ["inline", "delegate"])
def test_a_log_the_model_wrote_is_predicted_exactly(tmp_path: Path, path_kind: str) -> None:
    delays = (0.0, 0.0, 50.0)
    t = write_model_log(tmp_path, delays, path_kind)
    p = predict_cell(tmp_path, 2 if path_kind == "delegate" else 0)
    assert p is not None
    assert p.measured_s == pytest.approx(t / 1000)
    assert p.predicted_s == pytest.approx(t / 1000, rel=1e-6)
    assert p.replayed_s == pytest.approx(t / 1000, rel=1e-6)


def test_inferred_delegates_from_the_log(tmp_path: Path) -> None:
    """Two workers per direction and 50 ms: K = 1 contradicts the log (messages end < 50 ms
    apart), so the smallest consistent K is 2."""
    write_model_log(tmp_path, (0.0, 0.0, 50.0), "delegate")
    p = predict_cell(tmp_path)
    assert p is not None and p.delegates == 2 and p.uses_delegates


def test_predicted_s_in_plot_json(tmp_path: Path) -> None:
    """Every cell of the plot JSON has ``predicted_s``: a value where the log can be replayed
    (here the model's own log, so it equals the measured time), null where it cannot (the
    synthetic logs have no schedules)."""
    write_fig15_quick(tmp_path)
    fig = get_figure("fig15")
    cells = fig.cells(base_spec(), quick=True)
    zb = next(c for c in cells if c.method == "zb" and c.delay_s == 0.06)
    folder = cell_folder(tmp_path, zb)
    for f in folder.glob("stage*.jsonl"):
        f.unlink()
    write_cell(tmp_path, zb, None, with_timeline=True)
    t = write_model_log(folder, (0.0, 0.0, 60.0), "inline", iterations=10)
    fig.plot(tmp_path, cells)
    out = json.loads((tmp_path / "fig15" / "fig15.json").read_text())
    assert all("predicted_s" in c for c in out["cells"])
    mine = next(c for c in out["cells"] if c["method"] == "zb" and c["delay_s"] == 0.06)
    assert mine["predicted_s"] == pytest.approx(t / 1000, rel=1e-5)
    assert mine["iteration_time_s"] == pytest.approx(t / 1000, rel=1e-5)
    series = out["series"]["zb"]
    assert any(p["predicted_s"] == pytest.approx(t / 1000, rel=1e-5) for p in series)


@pytest.mark.parametrize("method", ["zb", "pipemorph-cpu"])
def test_real_tiny_cell_within_a_loose_bound(tmp_path: Path, method: str) -> None:
    """A real engine run (tiny preset, paced, 20 ms on link 2-3 from iteration 1): the
    prediction from its own op log is within 25% (catches gross breakage only)."""
    out = tmp_path / method
    res = run_job(["--preset", "tiny", "--method", method, "--iterations", "5",
                   "--microbatches", "6", "--pace", "10,12,6", "--links", "2_3", "--delay",
                   "0.02", "--fault-at", "1", "--out", str(out)], nproc=4, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    p = predict_cell(out)
    assert p is not None and math.isfinite(p.predicted_s)
    assert abs(p.error) <= 0.25, (p.measured_ms, p.predicted_ms)
    assert p.uses_delegates == (method == "pipemorph-cpu")


def simulate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pmctl", "simulate", *args], capture_output=True,
                          text=True, timeout=120)


def test_simulate_paths_engine_cli(tmp_path: Path) -> None:
    """``--paths engine``: from flags (inline blocks the sender, delegates do not) and from a
    cell's own log (``--cell``); a bad combination is one line and exit 2."""
    flags = ("--tf", "30", "--tb", "36", "--tw", "18", "--delay", "2_3=60", "--json")
    ideal = json.loads(simulate_cli(*flags).stdout)["iteration_time"]
    inline = json.loads(simulate_cli("--paths", "engine", *flags).stdout)
    delegates = json.loads(simulate_cli("--paths", "engine", "--delegates", "3", *flags).stdout)
    assert inline["path"] == "inline" and inline["iteration_time"] > ideal
    assert delegates["path"] == "delegate" and delegates["iteration_time"] < inline["iteration_time"]
    t = write_model_log(tmp_path, (0.0, 0.0, 50.0), "inline")
    out = simulate_cli("--paths", "engine", "--cell", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["predicted_s"] == pytest.approx(t / 1000, rel=1e-6)
    bad = simulate_cli("--cell", str(tmp_path))
    assert bad.returncode == 2 and "--paths engine" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
