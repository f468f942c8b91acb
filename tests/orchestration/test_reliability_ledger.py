"""The run ledger holds one entry per cell that may have left something behind (issue 13): a
leftover kept for ``pmctl stop`` stays traceable after the next cell records itself, ``pmctl
stop`` walks every entry, and an entry goes once its processes are confirmed gone."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

from pmctl import runs
from pmctl.inventory import load_inventory
from pmctl.transport.local import LocalTransport
from tests.orchestration.support import pmctl_env, run_pmctl


def _leftover(t: LocalTransport, run_dir: Path, run_id: str) -> runs.RunEntry:
    """A cell's ledger entry with one real process group still running (as after a stop that
    failed), recorded the way a cell records itself."""
    token = secrets.token_hex(8)
    handle = t.start("stage", "sleep 120", {}, str(run_dir), token)
    entry = runs.RunEntry(run_id=run_id, pmctl_pid=os.getpid() + 10_000_000, inventory="", cell={},
                          started="t0", processes=[handle], remote_dirs={t.host.name: str(run_dir)})
    runs.save(entry)
    return entry


def test_stop_finds_the_leftovers_of_every_cell(tmp_path: Path, local_inventory: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMCTL_STATE_DIR", str(tmp_path / ".pmctl"))
    t = LocalTransport(load_inventory(local_inventory).hosts[1])
    first = _leftover(t, tmp_path / "work/runs/fig15-zb-00000001", "fig15-zb-00000001")
    second = _leftover(t, tmp_path / "work/runs/fig15-zb-00000002", "fig15-zb-00000002")  # the next cell
    try:
        r = run_pmctl(["stop", "--json", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
        assert r.returncode == 0, r.stderr
        stopped = json.loads(r.stdout)["stopped"]
        assert sum("stopped stage on stage1" in line for line in stopped) == 2, stopped
        assert not t.alive(first.processes[0]) and not t.alive(second.processes[0])
        assert not (tmp_path / "work/runs/fig15-zb-00000001").exists()
        again = run_pmctl(["stop", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
        assert again.stdout.strip() == "nothing running"  # both entries went with their processes
    finally:
        for e in (first, second):
            t.stop(e.processes[0], 0.1)


def test_an_entry_stays_until_its_processes_are_gone(tmp_path: Path, local_inventory: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # one entry's host is not in the inventory: that entry stays, the other goes
    monkeypatch.setenv("PMCTL_STATE_DIR", str(tmp_path / ".pmctl"))
    t = LocalTransport(load_inventory(local_inventory).hosts[0])
    mine = _leftover(t, tmp_path / "work/runs/fig15-zb-00000003", "fig15-zb-00000003")
    elsewhere = runs.RunEntry(run_id="fig15-zb-00000004", pmctl_pid=os.getpid() + 10_000_000, inventory="",
                              cell={}, started="t0", remote_dirs={"gpu-box-9": "/scratch/runs/fig15-zb-00000004"})
    runs.save(elsewhere)
    try:
        r = run_pmctl(["stop", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
        assert r.returncode == 0, r.stderr
        assert "not in this inventory: gpu-box-9" in r.stdout, r.stdout
        assert not t.alive(mine.processes[0])
        assert [e.run_id for e in runs.load_all()] == ["fig15-zb-00000004"]
    finally:
        t.stop(mine.processes[0], 0.1)


def test_a_malformed_entry_among_good_ones_stops_nothing(tmp_path: Path, local_inventory: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMCTL_STATE_DIR", str(tmp_path / ".pmctl"))
    t = LocalTransport(load_inventory(local_inventory).hosts[0])
    good = _leftover(t, tmp_path / "work/runs/fig15-zb-00000005", "fig15-zb-00000005")
    bad = good.to_json() | {"run_id": "fig15-zb-00000006", "processes": [
        good.processes[0].to_json() | {"token": "x; touch /tmp/pwned"}]}
    (runs.ledger_dir() / "fig15-zb-00000006.json").write_text(json.dumps(bad))
    try:
        r = run_pmctl(["stop", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
        assert r.returncode == 2, r.stdout + r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "pmctl did not write" in r.stderr
        assert t.alive(good.processes[0])  # nothing was acted on
    finally:
        t.stop(good.processes[0], 0.1)
