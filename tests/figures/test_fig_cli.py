"""``pmctl plot``, ``pmctl reference`` and ``pmctl trace`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fig_synthetic import write_fig15_quick, write_oplogs

from engine.cellspec import CellSpec

REPO = Path(__file__).resolve().parents[2]
# the spec's fields (its folder as figure_dir), the numbers and the status
JSON_KEYS = {"figure_dir", *(k for k in CellSpec().to_json() if k != "figure"),
             "iteration_time_s", "std_s", "predicted_s", "status"}

pytestmark = pytest.mark.slow  # each call starts a pmctl process


def pmctl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pmctl", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )


def test_plot_json_and_table(tmp_path: Path) -> None:
    write_fig15_quick(tmp_path / "results")
    out = pmctl("plot", "fig15", "fig20", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [d["figure"] for d in data] == ["fig15", "fig20"]  # several figures: a list
    assert all(JSON_KEYS <= set(c) <= JSON_KEYS | {"reason"} for d in data for c in d["cells"])
    fig20 = {(c["method"], c["delegates"]): c for c in data[1]["cells"]}
    # All-CPU with 1 delegate is fig15's 0 ms point (done); ours, automatic (0), was not run
    assert fig20[("all-cpu", 1)]["status"] == "done" and fig20[("all-cpu", 1)]["figure_dir"] == "fig20-k1"
    assert fig20[("all-cpu", 0)]["status"] == "missing" and fig20[("all-cpu", 0)]["iteration_time_s"] is None
    table = pmctl("plot", "15", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "PipeMorph-CPU" in table.stdout and "missing pipemorph 2_3 0.12: failed" in table.stdout
    assert "figure: results/fig15/fig15.png" in table.stdout


def test_plot_user_errors_exit_2(tmp_path: Path) -> None:
    unknown = pmctl("plot", "fig99", cwd=tmp_path)
    assert unknown.returncode == 2 and "sim-compare" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    nodata = pmctl("plot", "fig4", "--results", str(tmp_path), cwd=tmp_path)
    assert nodata.returncode == 2 and "pmctl run fig4" in nodata.stderr
    assert len(nodata.stderr.strip().splitlines()) == 1


def test_reference_and_trace(tmp_path: Path) -> None:
    tree = tmp_path / "ae" / "fig20"
    tree.mkdir(parents=True)
    (tree / "times.txt").write_text("{'ZB': [1.25]}\n")
    ref = pmctl("reference", str(tmp_path / "ae"), "--json", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr
    (ref_cell,) = json.loads(ref.stdout)["cells"]
    assert (ref_cell["figure"], ref_cell["method"], ref_cell["iteration_time_s"]) == ("fig20", "zb", 1.25)
    assert pmctl("reference", str(tmp_path / "none"), cwd=tmp_path).returncode == 2
    cell = tmp_path / "cell"
    write_oplogs(cell, [500.0])
    out = pmctl("trace", str(cell), "-o", str(tmp_path / "t.json"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    assert pmctl("trace", str(tmp_path / "nope"), cwd=tmp_path).returncode == 2
