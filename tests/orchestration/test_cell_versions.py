"""``cell.json`` records the versions a cell ran with, without ``pmctl setup``: the
controller's (pmctl, python, the project's git commit) and each host's (python, torch ...)
as its stages reported them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pmctl.session import PROJECT_ROOT, git_version
from tests.orchestration.support import pmctl_env, run_pmctl


def test_git_version_of_a_checkout_and_of_a_plain_folder(tmp_path: Path) -> None:
    assert git_version(tmp_path) == {}  # an installed wheel: no commit, no error
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert git_version(tmp_path) == {}  # no commit yet
    (tmp_path / "a.txt").write_text("a\n")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "untracked.txt").write_text("u\n")
    assert git_version(tmp_path) == {"git_commit": head, "git_dirty": False}
    (tmp_path / "a.txt").write_text("b\n")
    assert git_version(tmp_path) == {"git_commit": head, "git_dirty": True}


@pytest.mark.slow
def test_a_real_cell_records_versions_without_setup(tmp_path: Path, local_inventory: Path) -> None:
    args = ["run", "fig15", "--quick", "--methods", "zb", "--delays", "60", "--iters", "2",
            "--fault-at", "1", "--preset", "tiny", "--inventory", str(local_inventory)]
    r = run_pmctl(args, tmp_path, pmctl_env(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (tmp_path / ".pmctl" / "hosts").exists()  # no pmctl setup ran
    rec = json.loads((tmp_path / "results/tiny-it2-at1/fig15/zb/2_3/0.06/cell.json").read_text())
    v = rec["versions"]
    assert v["pmctl"] and v["python"].count(".") == 2
    if (PROJECT_ROOT / ".git").exists():
        assert len(v["git_commit"]) == 40 and isinstance(v["git_dirty"], bool)
    assert sorted(rec["hosts"]) == [f"stage{s}" for s in range(4)]
    for host in rec["hosts"].values():
        runtime = host["runtime"]
        assert runtime["torch"] and runtime["python"] and runtime["hostname"]
        assert runtime["device"] == "cpu" and runtime["backend"] == "gloo"
        assert "stage" not in runtime and "cuda" in runtime and "boot_id" in runtime
