"""The CLI's conventions through real subprocesses: --version, shell completion, exit codes in
--help, --json on run/list/setup/stop/status (pure JSON on stdout), and tables that are never
cut when stdout is a file or a pipe."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pmctl
from tests.orchestration.support import fake_entry, pmctl_env, run_pmctl

CELL = ["fig15", "--quick", "--methods", "zb", "--delays", "60", "--iters", "3", "--fault-at", "1", "--preset", "tiny"]
ELLIPSIS = "\u2026"


def _json_lines(stdout: str) -> list[dict]:
    """Every stdout line is one JSON object (nothing else is on stdout)."""
    lines = stdout.splitlines()
    assert lines, "no output"
    return [json.loads(line) for line in lines]


def test_version(tmp_path: Path) -> None:
    r = run_pmctl(["--version"], tmp_path, pmctl_env(tmp_path), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"pmctl {pmctl.__version__}\n"


def test_help_documents_the_exit_codes_and_completion(tmp_path: Path) -> None:
    r = run_pmctl(["--help"], tmp_path, pmctl_env(tmp_path), timeout=60)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.replace("│", " ").split())  # words, whatever the wrapping and boxes
    assert "Usage: pmctl" in text  # the program's name, also under `python -m pmctl`
    for words in ("Exit codes", "0 ok", "1 a cell failed", "2 usage error, bad input", "130 interrupted",
                  "--version", "--install-completion", "--show-completion"):
        assert words.replace("**", "") in text.replace("**", ""), words


def test_completion_script_and_a_completion_request(tmp_path: Path) -> None:
    # Typer's own switch to name the shell instead of detecting it from the parent process.
    env = pmctl_env(tmp_path, _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    script = run_pmctl(["--show-completion", "bash"], tmp_path, env, timeout=60)
    assert script.returncode == 0, script.stderr
    assert "_PMCTL_COMPLETE=complete_bash" in script.stdout and "complete " in script.stdout
    # What the installed script asks pmctl when the user presses Tab after `pmctl ru`.
    ask = pmctl_env(tmp_path, _PMCTL_COMPLETE="complete_bash", COMP_WORDS="pmctl ru", COMP_CWORD="1")
    r = subprocess.run([sys.executable, "-m", "pmctl"], cwd=tmp_path, env=ask, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["run"], r.stdout
    ask = pmctl_env(tmp_path, _PMCTL_COMPLETE="complete_bash", COMP_WORDS="pmctl run --dry", COMP_CWORD="2")
    r = subprocess.run([sys.executable, "-m", "pmctl"], cwd=tmp_path, env=ask, capture_output=True, text=True, timeout=60)
    assert "--dry-run" in r.stdout.split(), r.stdout


def test_list_json(tmp_path: Path) -> None:
    r = run_pmctl(["list", "--json", "--cells", "--quick"], tmp_path, pmctl_env(tmp_path), timeout=60)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    figs = {f["figure"]: f for f in data["figures"]}
    assert data["quick"] is True and {"fig15", "fig19"} <= set(figs)
    fig15 = figs["fig15"]
    assert fig15["kind"] == "measured" and fig15["cells"] == len(fig15["cell_list"]) > 0
    assert fig15["estimate_s"] > 0 and fig15["title"]
    assert {"cell", "spec"} <= set(fig15["cell_list"][0]) and fig15["cell_list"][0]["spec"]["method"]


def test_run_dry_run_json_and_no_truncation_when_piped(tmp_path: Path, local_inventory: Path) -> None:
    # A long results path, and a terminal width that would cut it were it applied to a file.
    results = tmp_path / ("a-results-folder-with-a-long-name-" * 3) / "results"
    env = {**pmctl_env(tmp_path), "COLUMNS": "60"}
    args = ["run", "fig15", "--dry-run", "--inventory", str(local_inventory), "--results", str(results)]
    js = run_pmctl([*args, "--json"], tmp_path, env)
    assert js.returncode == 0, js.stderr
    objs = _json_lines(js.stdout)
    plans = [o for o in objs if o["type"] == "plan"]
    assert len(plans) == 33 and objs[-1] == {"type": "summary", "dry_run": True, "cells": 33, "run": 33, "skip": 0, "exit_code": 0}
    assert all(p["action"] == "run" and p["status"] == "missing" and p["spec"]["figure"] in ("fig15", "fig20", "fig20-k1") for p in plans)  # 0 ms: fig20 cells (All-CPU with 1 delegate: fig20-k1)

    out = tmp_path / "dry-run.txt"
    with out.open("w") as fh:
        r = subprocess.run([sys.executable, "-m", "pmctl", *args], cwd=tmp_path, env=env, stdout=fh,
                           stderr=subprocess.PIPE, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert ELLIPSIS not in text
    for p in plans:  # each folder whole, on one line
        assert p["folder"] in text, p["folder"]
    assert not results.exists()


def test_status_piped_is_never_cut(tmp_path: Path, local_inventory: Path) -> None:
    env = {**pmctl_env(tmp_path), "COLUMNS": "40"}
    out = tmp_path / "status.txt"
    with out.open("w") as fh:
        r = subprocess.run([sys.executable, "-m", "pmctl", "status", "--inventory", str(local_inventory)],
                           cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.PIPE, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert ELLIPSIS not in text
    js = run_pmctl(["status", "--json", "--inventory", str(local_inventory)], tmp_path, env)
    assert js.returncode == 0, js.stderr
    data = json.loads(js.stdout)
    assert len(data["hosts"]) == 4
    lines = text.splitlines()
    for h in data["hosts"]:  # every host's row is whole: its name and address on one line
        assert any(h["name"] in line and h["address"] in line for line in lines), h
    for f in data["figures"]:
        assert any(f" {f['figure']} " in line for line in lines), f


def test_setup_and_stop_json(tmp_path: Path, local_inventory: Path) -> None:
    env = pmctl_env(tmp_path)
    plan = run_pmctl(["setup", "--dry-run", "--json", "--inventory", str(local_inventory)], tmp_path, env)
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)
    assert data["dry_run"] is True and any("redis-server" in line for line in data["plan"])

    setup = run_pmctl(["setup", "--json", "--inventory", str(local_inventory)], tmp_path, env)
    data = json.loads(setup.stdout)  # the JSON comes first, also when a host has a problem
    assert [h["host"] for h in data["hosts"]] == [f"stage{i}" for i in range(4)]
    assert all(h["action"] == "checked" and h["facts"]["python"] for h in data["hosts"])
    if shutil.which("redis-server"):
        assert setup.returncode == 0 and data["ok"] is True, setup.stderr
    else:
        assert setup.returncode == 2 and "redis-server" in data["hosts"][0]["problem"]

    stop = run_pmctl(["stop", "--json", "--inventory", str(local_inventory)], tmp_path, env)
    assert stop.returncode == 0, stop.stderr
    assert json.loads(stop.stdout) == {"running": False, "run_id": None, "stopped": []}


@pytest.mark.slow
def test_run_json_one_line_per_cell_then_a_summary(tmp_path: Path, direct_inventory: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    inv = ["--inventory", str(direct_inventory)]
    env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=fake_entry(tmp_path, iter_s=0.05))
    first = run_pmctl(["run", *CELL, *inv, "--json"], tmp_path, env)
    assert first.returncode == 0, first.stdout + first.stderr
    cell, summary = _json_lines(first.stdout)
    assert cell["type"] == "cell" and cell["status"] == "done" and cell["reason"] == ""
    assert cell["cell"] == "fig15/zb/2_3/0.06" and cell["spec"]["method"] == "zb" and cell["spec"]["iterations"] == 3
    assert cell["folder"].endswith("fig15/zb/2_3/0.06") and Path(tmp_path, cell["folder"]).is_dir()
    assert cell["seconds"] > 0 and cell["mean_ms"] == pytest.approx(50.0, rel=0.5)
    assert summary == {"type": "summary", "cells": 1, "done": 1, "skipped": 0, "failed": 0, "interrupted": 0, "not_run": 0,
                       "seconds": cell["seconds"], "exit_code": 0}
    assert "summary" in first.stderr  # the human output went to stderr

    again = run_pmctl(["run", *CELL, *inv, "--json"], tmp_path, env)
    assert again.returncode == 0
    cell, summary = _json_lines(again.stdout)
    assert (cell["status"], cell["reason"], summary["skipped"]) == ("skipped", "done", 1)

    env_fail = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=fake_entry(tmp_path, iter_s=0.05, fail_stage=1))
    failed = run_pmctl(["run", *CELL, *inv, "--json", "--force"], tmp_path, env_fail)
    assert failed.returncode == 1
    cell, summary = _json_lines(failed.stdout)
    assert cell["status"] == "failed" and cell["reason"].startswith("stage 1")
    assert cell["exit_codes"]["stage1"] not in (0, None)
    assert (summary["failed"], summary["exit_code"]) == (1, 1)


def test_tables_fold_instead_of_cutting_on_a_narrow_terminal() -> None:
    from rich.console import Console

    from pmctl.console import make_table

    folder = "results/tiny-s8-it12-at4/fig17/pipemorph-cpu/0_1,2_3/0.12"
    table = make_table("folder", "status", "reason")
    table.add_row(folder, "failed", "stage 1 on stage1 exited with 3 after iteration 1")
    console = Console(width=40, force_terminal=True, color_system=None, record=True)
    console.print(table)
    text = console.export_text()
    assert ELLIPSIS not in text
    cells = "".join(line.split("│")[1].strip() for line in text.splitlines() if line.count("│") == 4)
    assert folder in cells  # the folder column, read down, is the whole folder
