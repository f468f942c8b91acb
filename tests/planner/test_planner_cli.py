"""``pmctl simulate`` through a real subprocess: JSON shape, human output, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def pmctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pmctl", "simulate", *args], capture_output=True, text=True, timeout=120
    )


def test_json_is_one_object_with_the_anchor():
    out = pmctl("--stages", "4", "--microbatches", "12", "--schedule", "zb", "--delay", "0_1=20", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # exactly one JSON object: json.loads rejects trailing data
    assert data["iteration_time"] == 440 and isinstance(data["iteration_time"], int)
    assert 0 < data["bubble_rate"] < 1
    assert data["warmup"] == [7, 5, 3, 1]
    assert data["delta"] == [2, 2, 2]
    assert data["peak_activations"] == [12, 12, 12, 12]
    assert data["order"][3][:4] == ["F0", "B0", "F1", "B1"]
    assert len(data["ops"]) == 4 * 12 * 3
    assert set(data["ops"][0]) == {"stage", "op", "mb", "start", "end"}
    assert data["plan_delays"] == [0, 0, 0]  # zb plans healthy by default


def test_adaptive_schedules_plan_for_the_actual_delays_by_default():
    out = pmctl("--schedule", "pipemorph", "--delay", "2_3=30", "--json")
    data = json.loads(out.stdout)
    assert data["plan_delays"] == [0, 0, 30]
    assert data["warmup"] == [10, 8, 6, 1]
    assert data["iteration_time"] == 420
    planned_healthy = json.loads(
        pmctl("--schedule", "pipemorph", "--delay", "2_3=30", "--plan-delay", "2_3=0", "--json").stdout
    )
    assert planned_healthy["warmup"] == [7, 5, 3, 1]
    assert planned_healthy["iteration_time"] > 420


def test_per_stage_costs_and_float_costs():
    data = json.loads(pmctl("-s", "2", "-n", "3", "--tf", "1.5,2", "--tb", "1", "--tw", "1", "--json").stdout)
    assert data["ops"][0] == {"stage": 0, "op": "F", "mb": 0, "start": 0, "end": 1.5}


def test_human_output_has_summary_and_timeline():
    out = pmctl("--schedule", "1f1b", "--delay", "0_1=10")
    assert out.returncode == 0, out.stderr
    assert "iteration time" in out.stdout and "550" in out.stdout
    assert "stage  3 " in out.stdout and "X" in out.stdout  # 1F1B's full backwards


def test_pipemorph_cap_is_a_warning_not_a_hang():
    out = pmctl("--schedule", "pipemorph", "-n", "4", "--delay", "0_1=1000", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["warmup"][0] == 4
    assert any("capped" in w for w in data["warnings"])


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--delay", "5_9=10"], "5_9"),
        (["--delay", "0_2=10"], "adjacent"),
        (["--tf", "-1"], "tf of stage 0"),
        (["--tb", "0"], "tb of stage 0"),
        (["--tw", "10,10"], "--tw: got 2 values for 4 stages"),
        (["--microbatches", "0"], "--microbatches 0"),
        (["--schedule", "fastest"], "unknown schedule 'fastest'"),
        (["--plan-delay", "1_2=-5"], "is negative"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle):
    out = pmctl(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert out.stdout == ""


def test_simulate_imports_neither_torch_nor_matplotlib():
    code = (
        "import sys; sys.argv = ['pmctl', 'simulate', '--json']; import pmctl.cli as c\n"
        "try:\n    c.main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'pulp') if m in sys.modules]\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY=" in out.stderr and out.stderr.strip().endswith("HEAVY="), out.stderr


def test_plot_writes_a_png(tmp_path):
    png = tmp_path / "t.png"
    out = pmctl("--schedule", "pipemorph", "--delay", "0_1=20", "--plot", str(png))
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ilp_schedule_reports_optimality():
    pytest.importorskip("engine.planner.ilp")
    out = pmctl("-s", "2", "-n", "3", "--schedule", "ilp", "--delay", "0_1=5", "--time-limit", "20", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    heuristic = json.loads(pmctl("-s", "2", "-n", "3", "--schedule", "pipemorph+", "--delay", "0_1=5", "--json").stdout)
    assert isinstance(data["proven_optimal"], bool)
    assert data["lower_bound"] <= data["iteration_time"] <= heuristic["iteration_time"]
    assert data["solve_seconds"] >= 0
