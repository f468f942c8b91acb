"""The prepared GPU check's verdicts and clean-up, on CPU: its memory section is ok only when
the estimate bounds every measured peak, and a command that outlives its section is stopped,
then its ``stop`` command runs (pmctl's stages and Redis are in sessions of their own)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, ModuleType]:
    """``check_harness`` and ``gpu_check`` from bench/ (a folder of scripts, not a package)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("check_harness"), importlib.import_module("gpu_check")


def _row(cell: str, stage: int, ratio: float | None) -> dict:
    return {"cell": cell, "stage": stage, "measured_over_estimate": ratio}


def test_memory_is_ok_only_when_the_estimate_bounds_every_measured_peak(bench) -> None:
    verdict = bench[1].memory_verdict
    rows = [_row("fig15/zb/none/0", 0, 0.71), _row("fig15/zb/none/0", 1, 0.93)]
    ok = verdict(rows, "cuda")
    assert ok["ok"] and ok["error"] is None
    assert (ok["worst_measured_over_estimate"], ok["worst_stage"]) == (0.93, "fig15/zb/none/0 stage 1")
    over = verdict([*rows, _row("fig15/1f1b/none/0", 2, 1.04)], "cuda")
    assert not over["ok"] and over["worst_stage"] == "fig15/1f1b/none/0 stage 2"
    assert "measured over estimate 1.040 > 1 at fig15/1f1b/none/0 stage 2" in over["error"]
    unmeasured = verdict([*rows, _row("fig15/zb/none/0", 2, None)], "cuda")
    assert not unmeasured["ok"] and unmeasured["error"] == "1 stage(s) not measured"
    assert not verdict([], "cuda")["ok"]
    # on CPU nothing is measured: the estimates alone are the section's content
    assert verdict([_row("c", 0, None)], "cpu")["ok"]


def test_a_command_past_its_section_is_stopped_then_its_stop_command_runs(bench, tmp_path: Path) -> None:
    harness = bench[0]
    mark = tmp_path / "stopped"
    env = {**os.environ, "MARK": str(mark)}
    stop = [sys.executable, "-c", "import os, pathlib; pathlib.Path(os.environ['MARK']).write_text(os.getcwd())"]
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    with pytest.raises(harness.SectionTimeout), harness.alarm(0.5):
        harness.run_cmd(sleeper, tmp_path, env, tmp_path / "out", stop=stop)
    assert mark.read_text() == str(tmp_path)  # same cwd and environment as the command
    mark.unlink()
    # a command that finishes in time needs no stop
    assert harness.run_cmd([sys.executable, "-c", "pass"], tmp_path, env, tmp_path / "out", stop=stop) == 0
    assert not mark.exists()
