"""Through real SSH to four network-namespace hosts: setup, run, status, stop, and faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.orchestration.support import NetnsCluster, fake_entry, pmctl_env, run_pmctl, wait_all_stages_logged

pytestmark = [pytest.mark.slow, pytest.mark.root]

CELL_ARGS = ["fig15", "--quick", "--methods", "zb", "--delays", "60", "--iters", "4", "--fault-at", "1", "--preset", "tiny"]
CELL_DIR = "fig15/zb/2_3/0.06"  # below the results folder of the run's spec variant


def _cell_dir(tmp_path: Path) -> Path:
    """The folder of the one fig15 cell a test ran (whatever its spec's results folder)."""
    (found,) = [p for p in (tmp_path / "results").glob(f"**/{CELL_DIR}") if p.is_dir()]
    return found


def test_setup_fast_path_records_facts_per_host(netns_cluster: NetnsCluster, tmp_path: Path) -> None:
    env = pmctl_env(tmp_path)
    r = run_pmctl(["setup", "--inventory", str(netns_cluster.inventory)], tmp_path, env)
    assert r.returncode == 0, r.stdout + r.stderr
    for h in netns_cluster.hosts:
        facts = json.loads((tmp_path / ".pmctl" / "hosts" / f"{h.name}.json").read_text())
        assert facts["address"] == h.address
        assert facts["torch"] and facts["gloo"] is True
    assert json.loads((tmp_path / ".pmctl/hosts/h0.json").read_text())["redis"] is True


def _start_run(
    netns_cluster: NetnsCluster, tmp_path: Path, entry: str | None, *extra: str, launcher: str = "torchrun"
) -> subprocess.Popen[str]:
    """``pmctl run`` of the fig15 cell in the background (entry None = the real engine)."""
    env = pmctl_env(tmp_path, **({"PMCTL_ENGINE_ENTRY": entry} if entry else {}))
    inv = netns_cluster.write_inventory(tmp_path / f"inv-{launcher}.toml", launcher=launcher)
    return subprocess.Popen(
        [sys.executable, "-m", "pmctl", "run", *CELL_ARGS, "--inventory", str(inv), *extra],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


def _status_while_running(tmp_path: Path) -> dict:
    r = run_pmctl(["status", "--json"], tmp_path, pmctl_env(tmp_path), timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_run_status_and_results_through_ssh(netns_cluster: NetnsCluster, tmp_path: Path) -> None:
    (tmp_path / "inventory.toml").write_text(netns_cluster.inventory.read_text())
    # The real engine: tiny preset, 60 ms on link 2-3 from iteration 1, gloo between hosts.
    proc = _start_run(netns_cluster, tmp_path, None, "--iters", "3")
    try:
        wait_all_stages_logged(netns_cluster.work_dirs())
        data = _status_while_running(tmp_path)
        assert [h["name"] for h in data["hosts"]] == ["h0", "h1", "h2", "h3"]
        assert all(h["reachable"] for h in data["hosts"])
        assert data["running"]["cell"]["method"] == "zb"
        assert data["running"]["redis"] == "up"
        assert sorted(data["running"]["stages"]) == ["0", "1", "2", "3"]
        # The control-plane password is in no process's command line on any host.
        (secret,) = (tmp_path / ".pmctl" / "secrets").glob("*.pw")
        password = secret.read_text().strip().encode()
        for i in range(4):
            for pid in netns_cluster.pids(i):
                try:
                    assert password not in Path(f"/proc/{pid}/cmdline").read_bytes()
                except FileNotFoundError:
                    continue
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out + err
    cell = _cell_dir(tmp_path)
    record = json.loads((cell / "cell.json").read_text())
    assert record["status"] == "done"
    assert record["exit_codes"] == {"h0": 0, "h1": 0, "h2": 0, "h3": 0}
    assert record["spec"]["links"] == "2_3" and record["spec"]["iterations"] == 3
    assert record["mean_ms"] > 0
    for i, h in enumerate(netns_cluster.hosts):
        records = [json.loads(line) for line in (cell / f"stage{i}.jsonl").read_text().splitlines()]
        assert {r["iter"] for r in records if r["kind"] == "op"} == {0, 1, 2}
        assert (cell / f"{h.name}.stdout").exists() and (cell / f"{h.name}.stderr").exists()
        # Nothing left behind on the host: the run dir (password, trace, logs) is removed.
        assert not list((netns_cluster.dir / "work" / h.name / "runs").glob("*"))
    assert netns_cluster.our_processes() == []
    # The run ledger is cleared, so stop has nothing to do (and says so).
    r = run_pmctl(["stop"], tmp_path, pmctl_env(tmp_path))
    assert r.returncode == 0 and "nothing running" in r.stdout


def test_stop_from_another_shell_stops_everything(netns_cluster: NetnsCluster, tmp_path: Path) -> None:
    proc = _start_run(netns_cluster, tmp_path, fake_entry(tmp_path, iter_s=1.0), "--iters", "200", launcher="direct")
    try:
        wait_all_stages_logged(netns_cluster.work_dirs())
        # No --inventory: stop finds the hosts through the run ledger.
        r = run_pmctl(["stop"], tmp_path, pmctl_env(tmp_path))
        assert r.returncode == 0, r.stderr
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    assert netns_cluster.our_processes() == []
    assert json.loads((_cell_dir(tmp_path) / "cell.json").read_text())["status"] == "interrupted"
    again = run_pmctl(["stop"], tmp_path, pmctl_env(tmp_path))
    assert again.returncode == 0 and "nothing running" in again.stdout


def test_sigint_cleans_up_everything(netns_cluster: NetnsCluster, tmp_path: Path) -> None:
    # engine.forkrun on every host: its forked stage goes with it.
    proc = _start_run(netns_cluster, tmp_path, fake_entry(tmp_path, iter_s=1.0), "--iters", "200", launcher="fork")
    try:
        wait_all_stages_logged(netns_cluster.work_dirs())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out + err
    assert netns_cluster.our_processes() == []
    record = json.loads((_cell_dir(tmp_path) / "cell.json").read_text())
    assert record["status"] == "interrupted"
    assert not list((tmp_path / ".pmctl").glob("ledger/*.json"))  # no ledger entry left


def test_killed_stage_fails_the_cell_and_leaves_nothing(netns_cluster: NetnsCluster, tmp_path: Path) -> None:
    proc = _start_run(netns_cluster, tmp_path, fake_entry(tmp_path, iter_s=1.0), "--iters", "200", "--timeout", "120", launcher="direct")
    try:
        wait_all_stages_logged(netns_cluster.work_dirs())
        # Kill stage 2's worker the hard way, inside its namespace.
        for pid in netns_cluster.pids(2):
            try:
                if b"fake_engine.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                continue  # a short-lived process (a status probe) ended meanwhile
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, out + err
    record = json.loads((_cell_dir(tmp_path) / "cell.json").read_text())
    assert record["status"] == "failed"
    assert "h2" in record["reason"]
    assert netns_cluster.our_processes() == []


def test_host_with_sshd_down_fails_fast_naming_it(netns_cluster: NetnsCluster, tmp_path: Path) -> None:
    netns_cluster.stop_sshd(1)
    try:
        env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=fake_entry(tmp_path))
        t0 = time.monotonic()
        setup = run_pmctl(["setup", "--inventory", str(netns_cluster.inventory)], tmp_path, env, timeout=60)
        run = run_pmctl(["run", *CELL_ARGS, "--inventory", str(netns_cluster.inventory)], tmp_path, env, timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        netns_cluster.start_sshd(1)
    assert setup.returncode != 0 and "h1" in setup.stderr
    assert run.returncode == 2 and "h1" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert elapsed < 60  # bounded by the inventory's 5 s connect timeout, not a hang
    assert not list(tmp_path.glob(f"results/**/{CELL_DIR}"))


def test_unknown_host_key_refused_without_opt_in(netns_cluster: NetnsCluster, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inv = netns_cluster.write_inventory(tmp_path / "inv.toml", known_hosts=empty)
    env = pmctl_env(tmp_path)
    refused = run_pmctl(["status", "--json", "--inventory", str(inv)], tmp_path, env, timeout=60)
    hosts = json.loads(refused.stdout)["hosts"]
    assert not any(h["reachable"] for h in hosts)
    assert "unknown host key" in hosts[0]["error"]
    setup = run_pmctl(["setup", "--inventory", str(inv)], tmp_path, env, timeout=120)
    assert setup.returncode != 0 and "unknown host key" in setup.stderr
    assert empty.read_text() == ""
    accepted = run_pmctl(["setup", "--accept-new-host-keys", "--inventory", str(inv)], tmp_path, env, timeout=120)
    assert accepted.returncode == 0, accepted.stderr
    assert all(h.address in empty.read_text() for h in netns_cluster.hosts)


def test_wheel_deploy_then_run_from_the_host_venvs(netns_cluster: NetnsCluster, tmp_path: Path) -> None:
    inv = netns_cluster.write_inventory(tmp_path / "inv-wheel.toml", wheel=True)
    env = pmctl_env(tmp_path)
    first = run_pmctl(["setup", "--inventory", str(inv)], tmp_path, env, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert all(f"{h.name}: installed" in first.stdout for h in netns_cluster.hosts), first.stdout
    for h, work in zip(netns_cluster.hosts, netns_cluster.work_dirs()):
        facts = json.loads((tmp_path / ".pmctl" / "hosts" / f"{h.name}.json").read_text())
        assert facts["python_path"] == str(work / "venv" / "bin" / "python")
        assert facts["torch"] and facts["project"] is True and facts["bundle"] != "none"
        # The project runs from the pushed wheel inside the host's venv, not from this checkout.
        site = next((work / "venv" / "lib").glob("python3*/site-packages"))
        assert (site / "engine" / "train.py").is_file() and (site / "pmctl-base.pth").is_file()
    again = run_pmctl(["setup", "--inventory", str(inv)], tmp_path, env, timeout=600)
    assert again.returncode == 0 and again.stdout.count(": in sync") == 4, again.stdout

    # Another base interpreter remakes the venvs over it; this one has no torch: one line.
    no_torch = netns_cluster.write_inventory(tmp_path / "inv-sys.toml", hosts=[0, 1], wheel=True, base_python="/usr/bin/python3")
    bad = run_pmctl(["setup", "--inventory", str(no_torch)], tmp_path, env, timeout=600)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "no torch for" in bad.stderr and "a venv over /usr/bin/python3" in bad.stderr
    assert (netns_cluster.work_dirs()[0] / "bundle" / "base").read_text().strip() == "/usr/bin/python3"
    back = run_pmctl(["setup", "--inventory", str(inv)], tmp_path, env, timeout=600)
    assert back.returncode == 0 and back.stdout.count(": installed") == 2, back.stdout

    run = run_pmctl(["run", *CELL_ARGS, "--iters", "3", "--inventory", str(inv)], tmp_path, env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    record = json.loads((_cell_dir(tmp_path) / "cell.json").read_text())
    assert record["status"] == "done" and record["spec"]["launcher"] == "torchrun"
    assert netns_cluster.our_processes() == []


def test_new_key_type_for_a_known_host_is_refused_even_with_the_opt_in(netns_cluster: NetnsCluster, tmp_path: Path) -> None:
    # known_hosts holds an ECDSA key for h0; its sshd offers only its ed25519 host key: that
    # is a changed host, not a new one, and --accept-new-host-keys must not take it.
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(tmp_path / "other")], check=True)
    known = tmp_path / "known_hosts"
    h0 = netns_cluster.hosts[0]
    known.write_text(f"{h0.address} {(tmp_path / 'other.pub').read_text().split()[0]} {(tmp_path / 'other.pub').read_text().split()[1]}\n")
    before = known.read_text()
    inv = netns_cluster.write_inventory(tmp_path / "inv.toml", hosts=[0, 1], known_hosts=known)
    r = run_pmctl(["status", "--json", "--accept-new-host-keys", "--inventory", str(inv)], tmp_path, pmctl_env(tmp_path), timeout=60)
    hosts = {h["name"]: h for h in json.loads(r.stdout)["hosts"]}
    assert not hosts["h0"]["reachable"] and "refused" in hosts["h0"]["error"], hosts["h0"]
    assert hosts["h1"]["reachable"]  # a really new host is still accepted with the opt-in
    assert known.read_text().startswith(before) and known.read_text().count(h0.address) == 1


PROBE = Path(__file__).resolve().parent / "stage_probe.py"


@pytest.mark.parametrize("launcher", ["torchrun", "fork", "direct"])
def test_two_stages_per_host_run_in_host_order_then_local_rank(
    netns_cluster: NetnsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launcher: str
) -> None:
    # gpus = 2 on a CPU cluster: two hosts, two stages each (stage = node rank x 2 + local
    # rank), the real engine (tiny preset, 60 ms on link 1-2, the link between the hosts).
    # torchrun and fork: one agent per host; direct: one process per stage.
    from engine.cellspec import CellSpec
    from pmctl.inventory import load_inventory
    from pmctl.launcher import LaunchOptions, run_cell
    from pmctl.launchers import cell_fields
    from pmctl.session import Session

    monkeypatch.setenv("PMCTL_STATE_DIR", str(tmp_path / ".pmctl"))
    inv = load_inventory(netns_cluster.write_inventory(tmp_path / "inv.toml", hosts=[0, 1], launcher=launcher, gpus=2))
    assert [list(h.stage_range) for h in inv.hosts] == [[0, 1], [2, 3]]
    cell = CellSpec(figure="gpus2", method="zb", links=((1, 2),), delay_s=0.06, preset="tiny",
                    microbatches=8, iterations=3, fault_at=1, **cell_fields(inv))
    assert (cell.stages, cell.stages_per_host) == (4, 2)
    probe = tmp_path / "probe"
    probe.mkdir()
    opts = LaunchOptions(tmp_path / "results", timeout_s=240, engine_entry=(str(PROBE), str(probe)))
    with Session(inv) as session:
        outcome = run_cell(session, cell, opts)
    assert outcome.status == "done", outcome.reason
    record = json.loads((outcome.folder / "cell.json").read_text())
    assert record["spec"]["launcher"] == launcher and record["spec"]["stages_per_host"] == 2
    labels = [f"h{s // 2}.stage{s}" for s in range(4)] if launcher == "direct" else ["h0", "h1"]
    assert record["exit_codes"] == dict.fromkeys(labels, 0)
    assert {name: h["stages"] for name, h in record["hosts"].items()} == {"h0": [0, 1], "h1": [2, 3]}
    assert sorted(p.name for p in outcome.folder.glob("stage*.jsonl")) == [f"stage{s}.jsonl" for s in range(4)]
    netns = [os.readlink(f"/proc/{netns_cluster.pids(i)[0]}/ns/net") for i in (0, 1)]  # sshd's
    for s in range(4):
        records = map(json.loads, (outcome.folder / f"stage{s}.jsonl").read_text().splitlines())
        ops = [r for r in records if r["kind"] == "op"]
        assert {r["stage"] for r in ops} == {s} and {r["iter"] for r in ops} == {0, 1, 2}
        host, local = divmod(s, 2)
        where = json.loads((probe / f"rank{s}.json").read_text())
        assert where["cwd"].startswith(f"{netns_cluster.work_dirs()[host]}/runs/")
        assert where["netns"] == netns[host]
        assert (where["LOCAL_RANK"], where["GROUP_RANK"], where["LOCAL_WORLD_SIZE"], where["WORLD_SIZE"]) == (
            str(local), str(host), "2", "4")
        assert where["MASTER_ADDR"] == netns_cluster.hosts[0].address and where["GLOO_SOCKET_IFNAME"] == "eth0"
    assert all((outcome.folder / f"{label}.stdout").exists() and (outcome.folder / f"{label}.stderr").exists()
               for label in labels)
    assert netns_cluster.our_processes() == []
    assert not list((tmp_path / ".pmctl").glob("ledger/*.json"))  # no ledger entry left
