"""``PMCTL_P2P_SEMANTICS`` is not part of a cell's spec, yet it changes what a cell measures: a
run refuses a value the engine would refuse before any cell, and a finished cell measured
under other semantics (its stages' runtime facts say which) is stale, not reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import P2P_SEMANTICS_ENV
from figures.cells import Cell
from figures.store import DONE, STALE, CellRecord, Staging, cell_status, is_done, read_status
from tests.orchestration.support import pmctl_env, run_pmctl

CELL = Cell("fig15", "zb", ((2, 3),), 0.06)


def _done(root: Path, runtime: dict) -> None:
    """A finished cell whose stages reported ``runtime`` (an older pmctl's: {})."""
    hosts = {f"stage{s}": {"stages": [s], "runtime": runtime} for s in range(4)}
    st = Staging(root, CELL)
    st.commit(CellRecord(spec=CELL.to_json(), spec_hash=CELL.spec_hash, status=DONE, run_id="r1",
                         started="t0", ended="t1", hosts=hosts))


def test_a_cell_measured_under_other_semantics_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(P2P_SEMANTICS_ENV, raising=False)
    _done(tmp_path, {"python": "3.11", "p2p_semantics": "nccl"})
    assert cell_status(tmp_path, CELL) == STALE and not is_done(tmp_path, CELL)
    status, reason = read_status(tmp_path / "fig15/zb/2_3/0.06", CELL)
    assert status == STALE and "nccl p2p semantics, not the native" in reason, reason
    monkeypatch.setenv(P2P_SEMANTICS_ENV, "nccl")  # what the run asks for now
    assert is_done(tmp_path, CELL)


def test_a_cell_without_recorded_semantics_was_native(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _done(tmp_path, {"python": "3.11"})
    monkeypatch.delenv(P2P_SEMANTICS_ENV, raising=False)
    assert is_done(tmp_path, CELL)
    monkeypatch.setenv(P2P_SEMANTICS_ENV, "nccl")
    assert cell_status(tmp_path, CELL) == STALE


def test_a_run_refuses_unknown_semantics_before_any_cell(tmp_path: Path, local_inventory: Path) -> None:
    env = pmctl_env(tmp_path, **{P2P_SEMANTICS_ENV: "foo"})
    for extra in (["--dry-run"], []):
        r = run_pmctl(["run", "fig15", "--quick", "--methods", "zb", "--delays", "60", "--preset", "tiny",
                       "--inventory", str(local_inventory), *extra], tmp_path, env)
        assert r.returncode == 2, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"{P2P_SEMANTICS_ENV}='foo'" in lines[0], r.stderr
        assert not (tmp_path / "results").exists() and not (tmp_path / "work").exists()
