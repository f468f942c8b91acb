"""Three seeded trials of the chaos bench: kill -9 of the launcher, Redis and pmctl itself
mid-run (seed 5 picks those three), then ``pmctl stop`` and a rerun. Each trial checks that
nothing of ours is left running, cells seen done stay done and readable, no half-written
file is in the store, and the rerun completes."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.jobs import REPO

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def test_three_chaos_trials_survive() -> None:
    r = subprocess.run(
        [sys.executable, str(REPO / "bench" / "chaos.py"), "--trials", "3", "--seed", "5"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    lines = r.stdout.strip().splitlines()
    assert [x.split(":")[0] for x in lines[:-1] if x.startswith("trial")] == ["trial 0", "trial 1", "trial 2"]
    # seed 5 kills the launcher, then Redis, then pmctl itself; each kill happened (a pid)
    trials = [x for x in lines if x.startswith("trial")]
    assert ["kill launcher", "kill redis", "kill pmctl"] == [x.split(": ")[1].split(" at")[0] for x in trials]
    assert all("pid " in x for x in trials), r.stdout
    assert lines[-1] == "survived 3/3 trials", r.stdout + r.stderr
    assert r.returncode == 0
