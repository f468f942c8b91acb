"""The nic-crash figure: its cells, the expected-stop rule (ZB and 1F1B stop cleanly at a
crash and count as finished), the plot's JSON from synthetic logs, and one real quick run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fig_synthetic import write_cell, write_oplogs

from figures.cells import base_spec, cell_folder
from figures.nic_crash import before_window, crash_trace, tokens_per_iteration
from figures.registry import get_figure, plot_figure
from figures.store import CELL_JSON, DONE, FAILED, STOPPED, CellRecord, cell_status, is_done, read_status
from injector.trace import parse_trace
from pmctl.expected_stop import expected_stop, mark_expected_stop
from tests.orchestration.support import pmctl_env, write_local_inventory

REPO = Path(__file__).resolve().parents[2]
LINK_DOWN = ("engine: stage 0 failed: LinkDownError: link 0 (0_1) is down: inline send from stage 0 "
             "to stage 1 failed (NIC crash injected); only methods with delegates survive a crash")


def test_cells_one_crash_trace_per_method_quick_is_a_subset() -> None:
    base = base_spec()
    full, quick = get_figure("nic-crash").cells(base), get_figure("nic-crash").cells(base, True)
    assert [c.method for c in full] == ["zb", "1f1b", "pipemorph-cpu", "pipemorph"]
    assert set(quick) <= set(full) and [c.method for c in quick] == ["zb", "pipemorph"]
    c = full[0]
    assert c.trace_text == "3;;inf\n" == crash_trace(base) and c.iterations == 10
    assert parse_trace(c.trace_text, 4).fault_at(3).nic_crash
    assert str(cell_folder(Path("r"), c)) == f"r/nic-crash/zb/trace/{c.trace}"
    assert tokens_per_iteration(c) == 12 * 1 * 128  # cpu-small: 12 micro-batches of 1 x 128


def _failed_folder(path: Path, stderr: str, complete: int) -> Path:
    path.mkdir(parents=True)
    write_oplogs(path, [1000.0] * complete)
    (path / "local.stderr").write_text(stderr)
    return path


def test_expected_stop_needs_a_method_without_delegates_and_a_link_down_first(tmp_path: Path) -> None:
    folder = _failed_folder(tmp_path / "a", f"Traceback ...\n{LINK_DOWN}\nengine: stage 1 failed: RuntimeError: x\n", 3)
    want = "iteration 3: stage 0: LinkDownError: link 0 (0_1) is down"
    assert expected_stop("zb", folder).startswith(want)
    assert expected_stop("1F1B", folder).startswith(want)  # artifact spellings too
    assert expected_stop("pipemorph", folder) == ""  # it has delegates: dying is a failure
    other = _failed_folder(tmp_path / "b", "engine: stage 2 failed: RuntimeError: boom\n", 3)
    assert expected_stop("zb", other) == ""  # no stage says its link is down
    assert expected_stop("zb", _failed_folder(tmp_path / "c", "killed\n", 3)) == ""


def test_expected_stop_with_one_stream_per_stage_whatever_their_order(tmp_path: Path) -> None:
    # direct/torchrun launchers: one stderr per stage or host. The crashed link's sender (stage
    # 2) fails with LinkDownError; its neighbours' gloo errors follow, but their streams sort first.
    folder = _failed_folder(tmp_path / "a", "", 3)
    (folder / "local.stderr").unlink()
    gloo = "RuntimeError: [../gloo/transport/tcp/pair.cc:534] Connection closed by peer"
    (folder / "stage1.stderr").write_text(f"Traceback ...\nengine: stage 1 failed: {gloo}\n")
    (folder / "stage2.stderr").write_text(LINK_DOWN.replace("stage 0 failed", "stage 2 failed") + "\n")
    (folder / "stage3.stderr").write_text(f"engine: stage 3 failed: {gloo}\n")
    assert expected_stop("zb", folder).startswith("iteration 3: stage 2: LinkDownError: link 0 (0_1) is down")
    (folder / "stage2.stderr").write_text("killed\n")  # no stage's link went down: a failure
    assert expected_stop("zb", folder) == ""


def test_a_stopped_cell_is_finished_and_reads_back_stopped(tmp_path: Path) -> None:
    cell = get_figure("nic-crash").cells(base_spec(), True)[0]
    folder = _failed_folder(cell_folder(tmp_path, cell), LINK_DOWN + "\n", 3)
    record = CellRecord(spec=cell.to_json(), spec_hash=cell.spec_hash, status=FAILED, run_id="r",
                        started="", ended="", reason="stage0 exited with 1")
    mark_expected_stop(record, folder)
    assert record.status == DONE and record.stopped.startswith("iteration 3: stage 0: LinkDownError")
    (folder / CELL_JSON).write_text(json.dumps(record.to_json()))
    status, reason = read_status(folder, cell)
    assert status == STOPPED and reason.startswith("stopped at iteration 3: stage 0: LinkDownError")
    assert cell_status(tmp_path, cell) == DONE and is_done(tmp_path, cell)  # not re-run
    # a failure that is not the expected stop stays failed
    record = CellRecord(spec=cell.to_json(), spec_hash=cell.spec_hash, status=FAILED, run_id="r",
                        started="", ended="")
    record.spec["method"] = "pipemorph"
    mark_expected_stop(record, folder)
    assert record.status == FAILED and record.stopped == ""


ZB_MS = [1100.0, 1120.0, 1140.0]  # iterations 0-2; stopped in 3
# start-up and the profiled iteration (left out of "before"), the crash iteration, then delegates
PM_MS = [5000.0, 1600.0, 1140.0, 2000.0, *[1300.0] * 6]


@pytest.fixture(scope="module")
def plotted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("results")
    zb, pm = get_figure("nic-crash").cells(base_spec(), True)
    path = write_cell(root, zb, ZB_MS, with_timeline=True)
    record = json.loads((path / CELL_JSON).read_text())
    record["stopped"] = "iteration 3: stage 0: LinkDownError: link 0 (0_1) is down"
    (path / CELL_JSON).write_text(json.dumps(record))
    write_cell(root, pm, PM_MS, with_timeline=True)
    return root, plot_figure("nic-crash", root, quick=True)


def test_plot_json_draws_the_stop_and_the_throughput(plotted) -> None:
    root, report = plotted
    assert (root / "nic-crash" / "nic-crash.png").stat().st_size > 0
    data = json.loads((root / "nic-crash" / "nic-crash.json").read_text())
    assert data["cells"] == report.cells and data["crash_iteration"] == 3
    assert "14B" in data["caption"] and "4 stages of cpu-small" in data["caption"]
    zb, pm = report.cells
    assert zb["status"] == "stopped" and zb["iteration_time_s"] is None  # never a number
    assert zb["stopped"] == "stopped at iteration 3: stage 0: LinkDownError: link 0 (0_1) is down"
    assert zb["per_iteration_s"] == pytest.approx([t / 1000 for t in ZB_MS])
    assert zb["wall_clock_s"] == pytest.approx([0.0, 1.1, 2.22])
    assert zb["mean_after_s"] is None and zb["throughput_after_tokens_s"] is None
    tokens = 12 * 128
    assert pm["status"] == "done" and pm["completed_iterations"] == 10
    assert pm["throughput_tokens_s"][3] == pytest.approx(tokens / 2.0)
    assert pm["mean_before_s"] == pytest.approx(1.14)  # iteration 2 alone: 0 and 1 left out
    assert pm["mean_after_s"] == pytest.approx((2.0 + 6 * 1.3) / 7)
    assert pm["throughput_before_tokens_s"] == pytest.approx(tokens / 1.14, rel=1e-5)
    assert any("'before' mean is over iterations 2..2" in n for n in report.notes)
    assert not report.missing
    assert report.rows[0][-1].startswith("stopped at iteration 3")


def test_before_window_skips_start_up_and_profiling_and_keeps_the_last_five() -> None:
    assert before_window(3) == (2, 3)
    assert before_window(10) == (5, 10)
    assert before_window(2) == (2, 2)  # no steady iteration before the crash: n/a


def test_a_missing_cell_is_listed_not_drawn(tmp_path: Path) -> None:
    zb, pm = get_figure("nic-crash").cells(base_spec(), True)
    write_cell(tmp_path, pm, PM_MS, with_timeline=True)
    report = plot_figure("nic-crash", tmp_path, quick=True)
    assert report.missing == ["zb: missing - not run"]
    assert report.cells[0]["status"] == "missing" and "per_iteration_s" not in report.cells[0]


def _pmctl(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pmctl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=pmctl_env(cwd))


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_real_quick_run_zb_stops_pipemorph_trains_on(tmp_path: Path) -> None:
    inv = write_local_inventory(tmp_path / "inventory.toml", tmp_path / "work")
    spec = ["--quick", "--preset", "tiny", "--iters", "4", "--fault-at", "1", "--inventory", str(inv),
            "--results", str(tmp_path / "results")]
    run = _pmctl(["run", "nic-crash", *spec, "--json"], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    lines = [json.loads(x) for x in run.stdout.splitlines()]
    cells = {x["spec"]["method"]: x for x in lines if x["type"] == "cell"}
    assert cells["zb"]["status"] == "done" and cells["pipemorph"]["status"] == "done"
    assert cells["zb"]["reason"].startswith("stopped at iteration 2: stage ")
    assert "LinkDownError" in cells["zb"]["reason"]
    plot = _pmctl(["plot", "nic-crash", *spec, "--json"], tmp_path)
    assert plot.returncode == 0, plot.stderr
    zb, pm = json.loads(plot.stdout)["cells"]
    assert zb["status"] == "stopped" and zb["iterations"] == [0, 1]
    assert pm["status"] == "done" and pm["iterations"] == list(range(10))
    assert pm["throughput_after_tokens_s"] > 0
    again = _pmctl(["run", "nic-crash", *spec, "--json"], tmp_path)  # a stopped cell is finished
    summary = json.loads(again.stdout.splitlines()[-1])
    assert again.returncode == 0 and summary["skipped"] == 2
