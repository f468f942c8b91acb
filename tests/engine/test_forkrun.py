"""engine.forkrun as a real process: torchrun's environment per forked stage, a module entry's
main(argv) called in each stage, and torchrun's supervision (one stage fails or is killed: the
others are stopped and the status passed on; TERM to the launcher or its death ends every
stage). The entries are small scripts, so these tests need no torch import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Records its environment, then does what its rank is told to in argv (JSON: rank -> action).
SCRIPT = """
import glob, json, os, sys, time
out, plan = sys.argv[1], json.loads(sys.argv[2])
rank = os.environ["RANK"]
keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
        "ROLE_RANK", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
with open(f"{out}/.rank{rank}", "w") as f:
    json.dump({"env": {k: os.environ[k] for k in keys}, "pid": os.getpid(), "argv": sys.argv[1:]}, f)
os.rename(f"{out}/.rank{rank}", f"{out}/rank{rank}.json")
# Every local stage is up before any acts, so a test knows all their pids.
deadline = time.monotonic() + 10
while len(glob.glob(f"{out}/rank*.json")) < int(os.environ["LOCAL_WORLD_SIZE"]) and time.monotonic() < deadline:
    time.sleep(0.01)
action = plan.get(rank, "ok")
if action == "sleep":
    time.sleep(120)
elif action.startswith("exit"):
    sys.exit(int(action[4:]))
elif action == "raise":
    raise RuntimeError("stage blew up")
sys.stdout.write(f"rank {rank} ok\\n")
"""


def _launch(tmp_path: Path, plan: dict[str, str], *opts: str, ignore_hup: bool = False) -> subprocess.Popen[str]:
    script = tmp_path / "entry.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "engine.forkrun", "--master-port", "29999", "--grace", "1", *opts,
           str(script), str(tmp_path), json.dumps(plan)]
    hup = (lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if ignore_hup else None  # as nohup
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=hup)


def _finish(p: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str, str]:
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return p.returncode, out, err


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_ranks(tmp_path: Path, n: int, timeout: float = 20) -> dict[int, dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = list(tmp_path.glob("rank*.json"))
        if len(files) == n:
            return {int(f.stem[4:]): json.loads(f.read_text()) for f in files}
        time.sleep(0.05)
    raise AssertionError(f"only {len(list(tmp_path.glob('rank*.json')))} of {n} stages started")


def test_stages_get_torchruns_environment(tmp_path: Path) -> None:
    p = _launch(tmp_path, {}, "--nnodes", "3", "--node-rank", "1", "--nproc-per-node", "2",
                "--master-addr", "10.0.0.1")
    rc, out, err = _finish(p)
    assert rc == 0, err
    ranks = _wait_ranks(tmp_path, 2)
    assert sorted(ranks) == [2, 3]
    for local, rank in enumerate((2, 3)):
        assert ranks[rank]["env"] == {
            "RANK": str(rank), "LOCAL_RANK": str(local), "WORLD_SIZE": "6", "LOCAL_WORLD_SIZE": "2",
            "GROUP_RANK": "1", "GROUP_WORLD_SIZE": "3", "ROLE_RANK": str(rank), "ROLE_WORLD_SIZE": "6",
            "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29999",
        }
        assert ranks[rank]["argv"] == [str(tmp_path), "{}"]
    assert sorted(out.splitlines()) == ["rank 2 ok", "rank 3 ok"]
    assert len({r["pid"] for r in ranks.values()}) == 2


def test_a_failing_stage_stops_the_others_and_passes_its_status_on(tmp_path: Path) -> None:
    p = _launch(tmp_path, {"0": "sleep", "1": "exit3", "2": "sleep"}, "--nproc-per-node", "3")
    t0 = time.monotonic()
    rc, _out, _err = _finish(p)
    assert rc == 3
    assert time.monotonic() - t0 < 20  # not the sleepers' 120 s
    ranks = _wait_ranks(tmp_path, 3)
    assert not any(_alive(r["pid"]) for r in ranks.values())


def test_an_uncaught_error_is_reported_as_exit_1(tmp_path: Path) -> None:
    rc, _out, err = _finish(_launch(tmp_path, {"1": "raise"}, "--nproc-per-node", "2"))
    assert rc == 1 and "RuntimeError: stage blew up" in err


def test_a_killed_stage_is_named_and_fails_the_launch(tmp_path: Path) -> None:
    # Node 1 of 2: its local ranks 0 and 1 are the global ranks (stages) 2 and 3.
    p = _launch(tmp_path, {"2": "sleep", "3": "sleep"}, "--nnodes", "2", "--node-rank", "1", "--nproc-per-node", "2")
    ranks = _wait_ranks(tmp_path, 2)
    os.kill(ranks[3]["pid"], signal.SIGKILL)
    rc, _out, err = _finish(p)
    assert rc == 128 + signal.SIGKILL
    assert err.strip().splitlines()[-1] == "forkrun: local rank 1 (rank 3) was killed by SIGKILL"
    assert not _alive(ranks[2]["pid"])


def test_term_to_the_launcher_stops_every_stage(tmp_path: Path) -> None:
    p = _launch(tmp_path, {"0": "sleep", "1": "sleep"}, "--nproc-per-node", "2")
    ranks = _wait_ranks(tmp_path, 2)
    p.send_signal(signal.SIGTERM)  # the launcher alone, not its process group
    rc, _out, _err = _finish(p)
    assert rc == 128 + signal.SIGTERM
    assert not any(_alive(r["pid"]) for r in ranks.values())


def test_a_signal_ignored_at_start_stays_ignored(tmp_path: Path) -> None:
    p = _launch(tmp_path, {"0": "sleep", "1": "sleep"}, "--nproc-per-node", "2", ignore_hup=True)
    ranks = _wait_ranks(tmp_path, 2)
    p.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert p.poll() is None and all(_alive(r["pid"]) for r in ranks.values())
    p.send_signal(signal.SIGINT)
    rc, _out, _err = _finish(p)
    assert rc == 128 + signal.SIGINT
    assert not any(_alive(r["pid"]) for r in ranks.values())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_stages_die_with_a_killed_launcher(tmp_path: Path) -> None:
    p = _launch(tmp_path, {"0": "sleep", "1": "sleep"}, "--nproc-per-node", "2")
    ranks = _wait_ranks(tmp_path, 2)
    p.kill()  # SIGKILL: no chance to clean up
    p.wait()
    deadline = time.monotonic() + 10
    while any(_alive(r["pid"]) for r in ranks.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [r["pid"] for r in ranks.values() if _alive(r["pid"])]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert survivors == []


def test_module_entry_runs_its_main_once_imported(tmp_path: Path) -> None:
    pkg = tmp_path / "fkmod.py"
    pkg.write_text(
        "import os, sys\nLOADED_IN = os.getpid()\n"
        "def main(argv):\n"
        "    # one write per line: both stages share the pipe\n"
        "    sys.stdout.write(f\"{os.environ['RANK']} {LOADED_IN != os.getpid()} {argv} {sys.argv[0]}\\n\")\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{REPO}"}
    r = subprocess.run(
        [sys.executable, "-m", "engine.forkrun", "--master-port", "1", "--nproc-per-node", "2",
         "-m", "fkmod", "--flag", "x"], cwd=REPO, env=env, capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    # Imported in the launcher (before the fork), then main(argv) in each stage.
    assert sorted(r.stdout.splitlines()) == [
        "0 True ['--flag', 'x'] fkmod", "1 True ['--flag', 'x'] fkmod",
    ]

    (tmp_path / "nomain.py").write_text("X = 1\n")
    r = subprocess.run(
        [sys.executable, "-m", "engine.forkrun", "--master-port", "1", "-m", "nomain"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 2 and r.stderr.strip() == "forkrun: module nomain has no main(argv)"
