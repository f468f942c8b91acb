"""The run ledger is a file anyone with the state folder can edit: ``pmctl stop`` acts only on
what pmctl itself recorded. A reused pid is not the pmctl that wrote the ledger, and a value
that would reach a shell in another shape is refused with one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from pmctl import runs
from tests.orchestration.support import pmctl_env, run_pmctl


def _ledger(tmp_path: Path, inventory: Path, name: str = "fig15-zb-0123abcd", **changes: object) -> Path:
    entry = {
        "run_id": "fig15-zb-0123abcd", "pmctl_pid": 1, "inventory": str(inventory), "cell": {},
        "started": "t0", "control_url": "", "secret_file": "", "processes": [], "remote_dirs": {},
        "pmctl_start": "",
    }
    entry.update(changes)
    ledger = tmp_path / ".pmctl" / "ledger"
    shutil.rmtree(ledger, ignore_errors=True)  # this entry alone
    path = ledger / f"{name}.json"  # the default run id's file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entry))
    return path


def test_a_reused_pid_named_pmctl_is_not_signalled(tmp_path: Path, local_inventory: Path) -> None:
    # a live process with "pmctl" in its command line, on the pid the ledger names, but not
    # started when the ledger says: pmctl stop must leave it alone
    other = subprocess.Popen(["bash", "-c", "exec -a pmctl-lookalike sleep 60"])
    try:
        time.sleep(0.2)
        assert b"pmctl" in Path(f"/proc/{other.pid}/cmdline").read_bytes()
        _ledger(tmp_path, local_inventory, pmctl_pid=other.pid,
                pmctl_start=str(int(runs.process_start(other.pid)) - 1))
        r = run_pmctl(["stop", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
        assert r.returncode == 0, r.stderr
        assert "signalled" not in r.stdout
        assert other.poll() is None  # still running
        # the same pid with its true start time is the owner
        entry = runs.RunEntry(run_id="x", pmctl_pid=other.pid, inventory="", cell={}, started="",
                              pmctl_start=runs.process_start(other.pid))
        assert runs.owner_alive(entry)
    finally:
        other.kill()
        other.wait()


def test_a_ledger_value_never_reaches_a_shell(tmp_path: Path, local_inventory: Path) -> None:
    canary = tmp_path / "pwned"
    evil = f"x /dev/null; touch {canary}; true"
    for changes in (
        {"processes": [{"host": "stage0", "name": "stage", "pgid": 12345, "token": evil, "run_dir": "/tmp"}]},
        {"run_id": f"r; touch {canary}"},
        {"processes": [{"host": "stage0", "name": "stage", "pgid": f"1; touch {canary}",
                        "token": "0123456789abcdef", "run_dir": "/tmp"}]},
    ):
        _ledger(tmp_path, local_inventory, pmctl_pid=os.getpid() + 10_000_000, **changes)
        r = run_pmctl(["stop", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
        assert r.returncode == 2, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "pmctl did not write" in lines[0], r.stderr
        assert not canary.exists()


def test_a_ledger_without_the_owners_start_time_signals_nothing(tmp_path: Path, local_inventory: Path) -> None:
    # no start time recorded: the pid may be anyone's, even a live process named like pmctl
    other = subprocess.Popen(["bash", "-c", "exec -a pmctl-lookalike sleep 60"])
    try:
        time.sleep(0.2)
        assert b"pmctl" in Path(f"/proc/{other.pid}/cmdline").read_bytes()
        _ledger(tmp_path, local_inventory, pmctl_pid=other.pid, pmctl_start="")
        r = run_pmctl(["stop", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
        assert r.returncode == 0, r.stderr
        assert "signalled" not in r.stdout
        assert other.poll() is None  # still running
    finally:
        other.kill()
        other.wait()


def test_stop_deletes_only_the_runs_own_secrets(tmp_path: Path, local_inventory: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    for bad in ({"secret_file": str(precious)}, {"run_id": "a"}):  # a run id glob-matches /dev/shm/*a*
        _ledger(tmp_path, local_inventory, str(bad.get("run_id", "fig15-zb-0123abcd")),
                pmctl_pid=os.getpid() + 10_000_000, **bad)
        r = run_pmctl(["stop", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
        assert r.returncode == 2, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "pmctl did not write" in lines[0], r.stderr
        assert precious.read_text() == "keep me"
    # the run's own password file and client TLS files go with its entry (a pmctl killed
    # with -9 left them); another run's stay
    secrets = tmp_path / ".pmctl" / "secrets"
    tls = secrets / "fig15-zb-0123abcd.tls"
    tls.mkdir(parents=True)
    (tls / "client.key").write_text("key")
    (secrets / "fig15-zb-0123abcd.pw").write_text("pw")
    (secrets / "fig15-zb-99999999.pw").write_text("pw")
    _ledger(tmp_path, local_inventory, pmctl_pid=os.getpid() + 10_000_000,
            secret_file=str(secrets / "fig15-zb-0123abcd.pw"))
    r = run_pmctl(["stop", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in secrets.iterdir()) == ["fig15-zb-99999999.pw"]
    assert not list((tmp_path / ".pmctl" / "ledger").iterdir())


def test_an_older_pmctls_single_file_ledger_is_moved_in_and_acted_on(tmp_path: Path, local_inventory: Path) -> None:
    run_dir = tmp_path / "work" / "runs" / "fig15-zb-0a0b0c0d"
    run_dir.mkdir(parents=True)
    old = tmp_path / ".pmctl" / "running.json"
    entry = {  # the fields of pmctl's single-file ledger (no token, no kept dirs)
        "run_id": "fig15-zb-0a0b0c0d", "pmctl_pid": os.getpid() + 10_000_000, "inventory": str(local_inventory),
        "cell": {}, "started": "t0", "control_url": "", "secret_file": "", "processes": [],
        "remote_dirs": {"stage0": str(run_dir)}, "pmctl_start": "",
    }
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({**entry, "remote_dirs": {"stage0": "/etc"}}))  # checked like any entry
    r = run_pmctl(["stop", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
    assert r.returncode == 2 and "pmctl did not write" in r.stderr and old.exists(), r.stdout + r.stderr
    old.write_text(json.dumps(entry))
    r = run_pmctl(["stop", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert not run_dir.exists() and not old.exists()
    again = run_pmctl(["stop", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
    assert again.stdout.strip() == "nothing running"
