"""The breakdown figure: fig15's cells, the op-log split (compute, bubble, head-of-line) on
synthetic logs with known answers, the plot's JSON and the paper's subtraction view."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fig_synthetic import write_cell

from engine.oplog import OpLogWriter, read_records
from figures.cells import base_spec, cell_folder
from figures.op_breakdown import breakdown
from figures.registry import get_figure, plot_figure
from tests.orchestration.support import pmctl_env

REPO = Path(__file__).resolve().parents[2]

ITERS = 6


def write_split(path: Path, compute_ms: list[float], hol_ms: list[float], total_ms: float) -> None:
    """Op logs where each iteration of stage s computes ``compute_ms[s]``, stalls in a delayed
    inline send for ``hol_ms[s]`` and the iteration spans ``total_ms`` (a receive of stage 0
    ends last); plus a delegate send and an undelayed inline send that block nothing."""
    writers = [OpLogWriter(path / f"stage{s}.jsonl", s) for s in range(len(compute_ms))]
    for it in range(ITERS):
        for s, w in enumerate(writers):
            w.iteration(it, schedule=[], fault={}, costs={})
            w.op(it, "F", 0, 0.0, compute_ms[s] / 2, "inline")
            w.op(it, "W", 0, compute_ms[s] / 2, compute_ms[s], "inline")
            if hol_ms[s]:
                w.op(it, "SEND_F", 0, compute_ms[s], compute_ms[s] + hol_ms[s], "inline", peer=s + 1, delay_ms=60.0)
            w.op(it, "SEND_B", 1, 1.0, 9.0, "delegate", peer=max(s - 1, 0), delay_ms=60.0)
            w.op(it, "SEND_F", 2, 2.0, 5.0, "inline", peer=s + 1, delay_ms=0.0)
        writers[0].op(it, "RECV_B", 0, 0.0, total_ms, "inline", peer=1)
    for w in writers:
        w.close()


def test_split_known_answer(tmp_path: Path) -> None:
    write_split(tmp_path, [300.0, 500.0, 400.0], [0.0, 0.0, 250.0], 1000.0)
    b = breakdown(read_records(tmp_path))
    assert b is not None and b.iterations == (1, 2, 3, 4, 5) and b.iteration_ms == pytest.approx(1000.0)
    by_stage = {s.stage: s for s in b.stages}
    assert (by_stage[1].compute_ms, by_stage[1].hol_ms, by_stage[1].bubble_ms) == pytest.approx((500, 0, 500))
    # the stage stalled by the slow link is the critical one: 400 compute + 250 blocked
    assert b.critical.stage == 2
    assert (b.critical.compute_ms, b.critical.hol_ms, b.critical.bubble_ms) == pytest.approx((400, 250, 350))
    assert b.to_json()["critical_stage"] == 2 and len(b.to_json()["stages"]) == 3


def test_cuda_counts_the_delay_of_an_inline_send_that_returned_at_once(tmp_path: Path) -> None:
    """On CUDA the delay is a sleep kernel: the send's host time is ~0 and the stall is the gap
    before the next compute op's event; the split counts the delay there, out of the bubble."""
    w = OpLogWriter(tmp_path / "stage0.jsonl", 0)
    for it in range(ITERS):
        w.iteration(it, schedule=[], fault={}, costs={})
        w.op(it, "F", 0, 0.0, 100.0, "inline")
        w.op(it, "SEND_F", 0, 100.0, 100.05, "inline", peer=1, delay_ms=60.0)
        w.op(it, "W", 0, 160.0, 260.0, "inline")
        w.op(it, "RECV_B", 0, 0.0, 400.0, "inline", peer=1)
    w.close()
    cpu = breakdown(read_records(tmp_path))
    cuda = breakdown(read_records(tmp_path), device="cuda")
    assert cpu is not None and cuda is not None
    assert (cpu.critical.compute_ms, cpu.critical.hol_ms) == pytest.approx((200, 0.05))
    assert (cuda.critical.compute_ms, cuda.critical.hol_ms, cuda.critical.bubble_ms) == pytest.approx(
        (200, 60, 140))


def test_cells_are_fig15s_in_fig15s_folders() -> None:
    base = base_spec()
    for quick in (False, True):
        cells = get_figure("breakdown").cells(base, quick)
        assert cells == get_figure("fig15").cells(base, quick)
    assert {c.figure for c in cells} <= {"fig15", "fig20", "fig20-k1"}


def _times(method: str, delay_s: float) -> tuple[list[float], list[float], float]:
    """Synthetic compute/hol per stage and iteration time of fig15's quick cells."""
    d = delay_s * 1000
    hol = 12 * d if method in ("zb", "1f1b") else 0.0
    bubble = {"pipemorph": 0.5, "pipemorph+": 0.4}.get(method, 1.0) * 4 * d
    compute = 1000.0
    return [compute] * 4, [0.0, 0.0, hol, 0.0], compute + hol + bubble + 100.0


@pytest.fixture(scope="module")
def plotted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("results")
    cells = get_figure("fig15").cells(base_spec(), quick=True)
    for cell in cells:
        if cell.method == "1f1b" and cell.delay_s == 0.12:
            write_cell(root, cell, None, status="failed")
            continue
        compute, hol, total = _times(cell.method, cell.delay_s)
        path = cell_folder(root, cell)
        write_split(path, compute, hol, total)
        write_cell(root, cell, None, with_timeline=True)
    return root, plot_figure("breakdown", root, quick=True)


def test_plot_json_has_the_split_of_every_cell(plotted) -> None:
    root, report = plotted
    assert (root / "breakdown" / "breakdown.png").stat().st_size > 0
    data = json.loads((root / "breakdown" / "breakdown.json").read_text())
    assert data["figure"] == "breakdown" and data["cells"] == report.cells
    zb = next(c for c in report.cells if c["method"] == "zb" and c["delay_s"] == 0.06)
    assert zb["breakdown"]["critical_stage"] == 2
    assert zb["breakdown"]["hol_ms"] == pytest.approx(720.0)  # 12 x 60 ms
    assert zb["breakdown"]["compute_ms"] == pytest.approx(1000.0)
    assert zb["breakdown"]["bubble_ms"] == pytest.approx(4 * 60 + 100.0)
    pm = next(c for c in report.cells if c["method"] == "pipemorph" and c["delay_s"] == 0.12)
    assert pm["breakdown"]["hol_ms"] == 0 and pm["breakdown"]["bubble_ms"] == pytest.approx(0.5 * 480 + 100)
    failed = next(c for c in report.cells if c["method"] == "1f1b" and c["delay_s"] == 0.12)
    assert failed["status"] == "failed" and failed["breakdown"] is None  # never 0
    assert any(line.startswith("1f1b 2_3 0.12: failed") for line in report.missing)
    bars = {(b["method"], b["delay_ms"]): b for b in data["bars"]}
    assert bars[("pipemorph", 0.0)]["cell"].startswith("fig20-k1/all-cpu")  # fig15's 0 ms source
    assert bars[("1f1b", 120.0)]["breakdown"] is None


def test_subtraction_view_is_the_papers(plotted) -> None:
    root, _ = plotted
    data = json.loads((root / "breakdown" / "breakdown.json").read_text())
    sub = {(s["method"], s["delay_ms"]): s for s in data["subtraction"]}
    zb = sub[("zb", 60.0)]
    _, _, zb_nofault = _times("zb", 0.0)
    _, _, cpu = _times("pipemorph-cpu", 0.06)
    _, _, own = _times("zb", 0.06)
    assert zb["nofault_s"] == pytest.approx(zb_nofault / 1000)
    assert zb["bubble_s"] == pytest.approx((cpu - zb_nofault) / 1000)
    assert zb["hol_s"] == pytest.approx((own - cpu) / 1000)
    assert sub[("pipemorph-cpu", 60.0)]["hol_s"] == 0
    assert sub[("1f1b", 120.0)]["hol_s"] is None  # its cell failed: no term, never 0


@pytest.mark.slow
def test_dry_run_lists_fig15s_cells(tmp_path: Path) -> None:
    # breakdown adds no cell of its own: `pmctl run breakdown` runs (or skips) fig15's
    plans = {}
    for fig in ("breakdown", "fig15"):
        r = subprocess.run([sys.executable, "-m", "pmctl", "run", fig, "--quick", "--dry-run", "--json",
                            "--results", str(tmp_path / "r")], cwd=REPO, capture_output=True, text=True,
                           timeout=120, env=pmctl_env(tmp_path))
        assert r.returncode == 0, r.stderr
        plans[fig] = [json.loads(line)["folder"] for line in r.stdout.splitlines()
                      if json.loads(line)["type"] == "plan"]
    assert plans["breakdown"] == plans["fig15"] and str(tmp_path / "r/fig15/zb/2_3/0.06") in plans["fig15"]
