"""The CLI through real subprocesses: user errors are one line + exit 2; a local run writes a
complete cell, skips it next time, reruns it with --force; a failing stage fails the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cellspec import CellSpec
from tests.orchestration.support import fake_entry, pmctl_env, run_pmctl, wait_all_stages_logged

CELL = ["fig15", "--quick", "--methods", "zb", "--delays", "60", "--iters", "3", "--fault-at", "1", "--preset", "tiny"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "fig99"], "unknown figure"),
        (["run", "fig15", "--delays", "soon"], "--delays: delay 'soon' is not a number"),
        (["run", "fig15", "--links", "1_3"], "does not join adjacent stages"),
        (["run", "fig15", "--links", "²_3", "--dry-run"], "not of the form A_B"),
        (["run", "fig15", "--links", "4_5", "--dry-run"], "does not exist with 4 stages"),
        (["run", "fig15", "--stages", "9", "--dry-run"], "preset cpu-small has 8 layers"),
        (["run", "fig20", "--results", "bad.toml", "--dry-run"], "bad.toml: is not a folder"),
        (["plot", "missing.toml"], "missing.toml"),
        (["run", "fig15", "--methods", "zz"], "unknown method"),
        (["run", "fig15", "--preset", "huge"], "unknown preset"),
        (["run", "fig15", "--iters", "3", "--fault-at", "5"], "outside 0..2"),
        (["run", "fig15", "--inventory", "missing.toml"], "inventory file not found"),
        (["status", "--inventory", "bad.toml"], "cluster.transport"),
        (["setup", "--inventory", "bad.toml"], "cluster.transport"),
        (["run", "fig15", "--iters", "abc"], "Invalid value for '--iters'"),
        (["run", "fig15", "--bogus"], "No such option: --bogus"),
        (["status", "--watch", "--interval", "0"], "Invalid value for '--interval'"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], words: str) -> None:
    (tmp_path / "bad.toml").write_text('[cluster]\ntransport = "carrier-pigeon"\nstages = 4\n')
    r = run_pmctl(args, tmp_path, pmctl_env(tmp_path), timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_dry_run_lists_cells_and_touches_nothing(tmp_path: Path, local_inventory: Path) -> None:
    r = run_pmctl(["run", *CELL, "--dry-run", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "fig15/zb/2_3/0.06" in r.stdout
    assert not (tmp_path / "results").exists() and not (tmp_path / "work").exists()


def test_setup_dry_run_prints_the_plan(tmp_path: Path, local_inventory: Path) -> None:
    r = run_pmctl(["setup", "--dry-run", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
    assert r.returncode == 0 and "stage3" in r.stdout and "redis-server" in r.stdout


@pytest.mark.slow
def test_local_run_skip_force_and_failure(tmp_path: Path, direct_inventory: Path) -> None:
    # Direct launcher + a gloo rendezvous in the stand-in: torchrun's environment is complete.
    env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=fake_entry(tmp_path, iter_s=0.1, gloo=True))
    inv = ["--inventory", str(direct_inventory)]
    first = run_pmctl(["run", *CELL, *inv], tmp_path, env)
    assert first.returncode == 0, first.stdout + first.stderr
    cell = tmp_path / "results/tiny-it3-at1-direct/fig15/zb/2_3/0.06"
    rec = json.loads((cell / "cell.json").read_text())
    assert rec["status"] == "done" and rec["mean_ms"] == pytest.approx(100.0)
    assert sorted(p.name for p in cell.glob("stage*.jsonl")) == [f"stage{i}.jsonl" for i in range(4)]
    assert (cell / "stage0.stdout").read_text().strip() == "stage 0 done"

    again = run_pmctl(["run", *CELL, *inv], tmp_path, env)
    assert again.returncode == 0 and "skipped" in again.stdout
    assert json.loads((cell / "cell.json").read_text())["run_id"] == rec["run_id"]

    # --force reruns the finished cell; this time stage 1 fails: the finished result stays
    # and the failed attempt is kept beside it.
    env_fail = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=fake_entry(tmp_path, iter_s=0.1, fail_stage=1))
    failed = run_pmctl(["run", *CELL, "--force", *inv], tmp_path, env_fail)
    assert failed.returncode == 1
    assert json.loads((cell / "cell.json").read_text()) == rec
    (attempt,) = (cell / "attempts").iterdir()
    new = json.loads((attempt / "cell.json").read_text())
    assert new["run_id"] == attempt.name != rec["run_id"]
    assert new["status"] == "failed" and new["exit_codes"]["stage1"] not in (0, None)
    assert new["reason"].startswith("stage 1 on stage1 exited with")
    assert "injected failure" in (attempt / "stage1.stderr").read_text()
    assert "the finished result stays" in failed.stdout

    # A successful --force rerun replaces it; the earlier result moves to previous/.
    forced = run_pmctl(["run", *CELL, "--force", *inv], tmp_path, env)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert json.loads((cell / "cell.json").read_text())["run_id"] not in (rec["run_id"], new["run_id"])
    assert json.loads((cell / "previous" / rec["run_id"] / "cell.json").read_text()) == rec
    # Everything was cleaned up: no ledger, no per-run dirs on the "hosts".
    assert not list((tmp_path / ".pmctl").glob("ledger/*.json"))  # no ledger entry left
    assert not list((tmp_path / "work").glob("*/runs/*"))


def _processes_under(folder: Path) -> list[str]:
    """Command lines of processes whose cwd is inside ``folder`` (our stages and Redis)."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and str(folder) in os.readlink(d / "cwd"):
                found.append((d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


def _background_run(tmp_path: Path, env: dict[str, str], inventory: Path) -> subprocess.Popen[str]:
    """``pmctl run`` of the fig15 cell for 200 iterations, in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "pmctl", "run", *CELL, "--iters", "200", "--inventory", str(inventory)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_ctrl_c_to_the_terminal_group_cleans_up(tmp_path: Path, direct_inventory: Path) -> None:
    env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=fake_entry(tmp_path, iter_s=1.0))
    proc = _background_run(tmp_path, env, direct_inventory)
    try:
        wait_all_stages_logged([tmp_path / "work" / f"stage{i}" for i in range(4)])
        assert len(_processes_under(tmp_path / "work")) >= 5  # 4 stages + redis, at least
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out + err
    assert _processes_under(tmp_path / "work") == []
    rec = json.loads((tmp_path / "results/tiny-it200-at1-direct/fig15/zb/2_3/0.06/cell.json").read_text())
    assert rec["status"] == "interrupted"
    assert not list((tmp_path / ".pmctl").glob("ledger/*.json"))  # no ledger entry left


@pytest.mark.slow
def test_cell_timeout_fails_the_cell_and_stops_everything(tmp_path: Path, direct_inventory: Path) -> None:
    env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=fake_entry(tmp_path, iter_s=1.0))
    r = run_pmctl(["run", *CELL, "--iters", "200", "--timeout", "5", "--inventory", str(direct_inventory)], tmp_path, env)
    assert r.returncode == 1, r.stdout + r.stderr
    rec = json.loads((tmp_path / "results/tiny-it200-at1-direct/fig15/zb/2_3/0.06/cell.json").read_text())
    assert rec["status"] == "failed" and rec["reason"] == "timeout after 5 s"
    assert _processes_under(tmp_path / "work") == []


EXPERIMENT = """
name = "mine"
preset = "tiny"
iterations = 3
fault_at = 1
methods = ["zb"]
links = ["2_3"]
delays_ms = [60]
"""


@pytest.mark.slow
def test_specs_keep_apart_and_a_changed_experiment_is_stale(tmp_path: Path, torchrun_inventory: Path) -> None:
    # The local torchrun launcher: one agent starts all four stages.
    env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=fake_entry(tmp_path, iter_s=0.05))
    args = ["fig15", "--methods", "zb", "--delays", "60", "--links", "2_3", "--fault-at", "1",
            "--preset", "tiny", "--inventory", str(torchrun_inventory)]
    short = run_pmctl(["run", "--iters", "3", *args], tmp_path, env)
    assert short.returncode == 0, short.stdout + short.stderr
    # another spec than the paper's default: its own variant folder (torchrun is in the spec)
    scell = tmp_path / "results/tiny-it3-at1-torchrun/fig15/zb/2_3/0.06"
    srec = json.loads((scell / "cell.json").read_text())
    assert srec["status"] == "done" and srec["spec"]["iterations"] == 3
    assert srec["spec"]["launcher"] == "torchrun" and srec["spec"]["stages"] == 4
    assert sorted(p.name for p in scell.glob("stage*.jsonl")) == [f"stage{i}.jsonl" for i in range(4)]
    assert sorted((scell / "stage0.stdout").read_text().split("\n")[:-1]) == [f"stage {i} done" for i in range(4)]
    assert (scell / "timeline.png").exists()  # drawn after the cell committed

    # Another spec has its own results: nothing of the first run stands in or is replaced.
    longer = run_pmctl(["run", "--iters", "4", *args], tmp_path, env)
    assert longer.returncode == 0 and "skipped" not in longer.stdout, longer.stdout + longer.stderr
    lcell = tmp_path / "results/tiny-it4-at1-torchrun/fig15/zb/2_3/0.06"
    assert json.loads((lcell / "cell.json").read_text())["spec"]["iterations"] == 4
    assert json.loads((scell / "cell.json").read_text()) == srec
    status = run_pmctl(["status", "--json", "--iters", "3", "--fault-at", "1", "--preset", "tiny",
                        "--inventory", str(torchrun_inventory)], tmp_path, env)
    assert status.returncode == 0, status.stderr
    fig15 = next(f for f in json.loads(status.stdout)["figures"] if f["figure"] == "fig15")
    assert fig15["done"] == 1

    # An experiment file that changed since its run: the stored result is stale and re-runs,
    # and the finished one it replaces moves to previous/.
    exp = tmp_path / "mine.toml"
    exp.write_text(EXPERIMENT)
    inv = ["--inventory", str(torchrun_inventory)]
    assert run_pmctl(["run", str(exp), *inv], tmp_path, env).returncode == 0
    cell = tmp_path / "results/mine/zb/2_3/0.06"
    rec = json.loads((cell / "cell.json").read_text())
    exp.write_text(EXPERIMENT.replace("iterations = 3", "iterations = 4"))
    plan = run_pmctl(["run", str(exp), "--dry-run", *inv], tmp_path, env)
    assert plan.returncode == 0 and "stale" in plan.stdout, plan.stdout + plan.stderr
    assert run_pmctl(["run", str(exp), *inv], tmp_path, env).returncode == 0
    assert json.loads((cell / "cell.json").read_text())["spec"]["iterations"] == 4
    assert json.loads((cell / "previous" / rec["run_id"] / "cell.json").read_text()) == rec


@pytest.mark.slow
def test_eight_stage_experiment_end_to_end(tmp_path: Path, local_inventory: Path) -> None:
    # The real engine: an experiment file with 8 stages on the 4-stage local inventory.
    exp = tmp_path / "eight.toml"
    exp.write_text('name = "eight-stages"\npreset = "tiny"\nstages = 8\nmicrobatches = 8\n'
                   'iterations = 4\nfault_at = 1\nmethods = ["zb", "pipemorph"]\n'
                   'links = ["6_7"]\ndelays_ms = [40]\n')
    r = run_pmctl(["run", str(exp), "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    for method in ("zb", "pipemorph"):
        cell = tmp_path / "results/eight-stages" / method / "6_7/0.04"
        rec = json.loads((cell / "cell.json").read_text())
        assert rec["status"] == "done" and rec["spec"]["stages"] == 8
        assert sorted(p.name for p in cell.glob("stage*.jsonl")) == [f"stage{i}.jsonl" for i in range(8)]
    plot = run_pmctl(["plot", str(exp), "--json", "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path))
    assert plot.returncode == 0, plot.stderr
    data = json.loads(plot.stdout)
    assert data["figure"] == "eight-stages"
    assert [(c["method"], c["status"], c["stages"]) for c in data["cells"]] == [
        ("zb", "done", 8), ("pipemorph", "done", 8)]
    assert all(c["iteration_time_s"] > 0 for c in data["cells"])
    assert _processes_under(tmp_path / "work") == []


@pytest.mark.slow
def test_real_engine_on_the_default_fork_launcher(tmp_path: Path, local_inventory: Path) -> None:
    # The real engine (tiny preset, PipeMorph, 60 ms on link 2-3) forked from one launcher.
    args = ["run", "fig15", "--quick", "--methods", "pipemorph", "--delays", "60", "--iters", "4",
            "--fault-at", "1", "--preset", "tiny", "--inventory", str(local_inventory)]
    r = run_pmctl(args, tmp_path, pmctl_env(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    cell = tmp_path / "results/tiny-it4-at1/fig15/pipemorph/2_3/0.06"
    rec = json.loads((cell / "cell.json").read_text())
    assert rec["status"] == "done" and rec["spec"]["launcher"] == "fork"
    assert rec["spec_hash"] == CellSpec.from_json(rec["spec"]).spec_hash
    assert sorted(rec["iteration_ms"]) == ["0", "1", "2", "3"]
    for i in range(4):
        records = [json.loads(line) for line in (cell / f"stage{i}.jsonl").read_text().splitlines()]
        assert {r["iter"] for r in records if r["kind"] == "op"} == {0, 1, 2, 3}
    losses = [float(line.split()[3]) for line in (cell / "stage0.stdout").read_text().splitlines()
              if line.startswith("iter ")]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert _processes_under(tmp_path / "work") == []


def _children_of_forkrun(folder: Path) -> list[int]:
    """Pids of the stages forked by an engine.forkrun whose cwd is inside ``folder``."""
    def ppid(pid: str) -> str:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]

    launchers, procs = set(), {}
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and str(folder) in os.readlink(d / "cwd"):
                if b"engine.forkrun" in (d / "cmdline").read_bytes().split(b"\0"):  # not a shell -c
                    launchers.add(d.name)
                    procs[d.name] = ppid(d.name)
        except OSError:
            continue
    return [int(p) for p, parent in procs.items() if parent in launchers]


@pytest.mark.slow
def test_killed_forked_stage_fails_the_cell_and_nothing_is_left(tmp_path: Path, local_inventory: Path) -> None:
    env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=fake_entry(tmp_path, iter_s=1.0))
    proc = _background_run(tmp_path, env, local_inventory)
    try:
        wait_all_stages_logged([tmp_path / "work" / "stage0"])
        stages = _children_of_forkrun(tmp_path / "work")
        assert len(stages) == 4
        os.kill(stages[2], signal.SIGKILL)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, out + err
    rec = json.loads((tmp_path / "results/tiny-it200-at1/fig15/zb/2_3/0.06/cell.json").read_text())
    assert rec["status"] == "failed"
    assert rec["reason"].startswith("fork (stages 0-3) on stage0 exited with 137: forkrun: local rank ")
    assert rec["reason"].endswith("was killed by SIGKILL")
    assert _processes_under(tmp_path / "work") == []


@pytest.mark.slow
def test_status_watch_follows_a_running_cell_until_ctrl_c(tmp_path: Path, local_inventory: Path) -> None:
    env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=fake_entry(tmp_path, iter_s=0.3))
    inv = ["--inventory", str(local_inventory)]
    run = _background_run(tmp_path, env, local_inventory)
    watch = None
    try:
        wait_all_stages_logged([tmp_path / "work" / "stage0"])
        watch = subprocess.Popen(
            [sys.executable, "-m", "pmctl", "status", "--watch", "--json", "--interval", "0.5", *inv],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )
        assert watch.stdout is not None
        docs = [json.loads(watch.stdout.readline()) for _ in range(4)]  # one object per line
        watch.send_signal(signal.SIGINT)
        _out, err = watch.communicate(timeout=60)
        assert watch.returncode == 0 and "Traceback" not in err, err
        iterations = [d["running"]["stages"]["0"]["iteration"] for d in docs]
        assert iterations == sorted(iterations) and iterations[-1] > iterations[0]
        assert all(d["running"]["cell"]["method"] == "zb" for d in docs)
        assert [h["name"] for h in docs[0]["hosts"]] == [f"stage{i}" for i in range(4)]
    finally:
        for p in (watch, run):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        run.communicate(timeout=60)
    assert _processes_under(tmp_path / "work") == []


def test_a_second_run_is_refused_while_one_holds_the_state_folder(
    tmp_path: Path, local_inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pmctl import runs

    monkeypatch.setenv("PMCTL_STATE_DIR", str(tmp_path / ".pmctl"))
    env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=fake_entry(tmp_path))
    with runs.run_lock():  # as a pmctl run between two cells would hold it
        r = run_pmctl(["run", *CELL, "--inventory", str(local_inventory)], tmp_path, env)
    assert r.returncode == 2 and f"another pmctl run (pid {os.getpid()})" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_a_host_without_torch_is_one_line_before_any_cell(tmp_path: Path) -> None:
    # the controller-only install's case: the stages' python has no torch
    inv = tmp_path / "inv.toml"
    inv.write_text(f'[cluster]\ntransport = "local"\nstages = 4\nwork_dir = "{tmp_path / "work"}"\n'
                   'python = "/usr/bin/python3"\n')
    if subprocess.run(["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip("/usr/bin/python3 has torch here")
    r = run_pmctl(["run", "fig20", "--methods", "zb", "--inventory", str(inv)], tmp_path, pmctl_env(tmp_path))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no torch for /usr/bin/python3" in lines[0] and "pip install" in lines[0], r.stderr
    assert not (tmp_path / "results").exists()  # nothing ran
