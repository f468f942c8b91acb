"""pmctl when its own session or a host goes away: a SIGHUP (the controlling terminal or SSH
session dropped) cleans up like Ctrl-C; a host that vanishes mid-run ends the run at once with
one line naming it, the remaining cells not attempted and no hang at exit."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.orchestration.support import (
    FAKE_ENGINE,
    NetnsCluster,
    kill_tokened_processes,
    pmctl_env,
    run_pmctl,
    set_host_link,
    wait_all_stages_logged,
)

# Two cells (1f1b, then zb), each of 200 iterations; the stand-in below makes 1f1b quick.
CELLS = ["fig15", "--quick", "--methods", "1f1b,zb", "--delays", "60", "--iters", "200", "--fault-at", "1",
         "--preset", "tiny"]

# The engine entry: the stand-in engine, 10 ms per iteration for 1f1b and 1 s for zb.
_BY_METHOD = """\
import os, sys
fast = sys.argv[sys.argv.index("--method") + 1] == "1f1b"
cfg = sys.argv[1] if fast else sys.argv[2]
os.execv(sys.executable, [sys.executable, {fake!r}, "--fake-config", cfg, *sys.argv[3:]])
"""


def _entry(tmp_path: Path, slow_s: float = 1.0) -> str:
    """``--engine-entry``: the 1f1b cell finishes in seconds, the zb cell runs on."""
    script = tmp_path / "by_method.py"
    script.write_text(_BY_METHOD.format(fake=str(FAKE_ENGINE)))
    fast, slow = tmp_path / "fast.json", tmp_path / "slow.json"
    fast.write_text(json.dumps({"iter_s": 0.01}))
    slow.write_text(json.dumps({"iter_s": slow_s}))
    return f"{script} {fast} {slow}"


def _tokened(token: str) -> list[str]:
    """Command lines of the processes on this machine (any namespace) carrying ``token``."""
    needle = f"PMCTL_TOKEN={token}".encode()
    found = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and needle in (d / "environ").read_bytes().split(b"\0"):
                found.append((d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


def _ledger_entries(tmp_path: Path) -> list[Path]:
    """The run ledger's entries (one per cell in flight or not cleaned up)."""
    state = tmp_path / ".pmctl"
    return [*state.glob("ledger/*.json"), *state.glob("running.json")]


def _ledger_token(tmp_path: Path, timeout: float = 60) -> str:
    """The token of the cell in flight, once the ledger records its Redis and a stage."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in _ledger_entries(tmp_path):
            try:
                procs = json.loads(entry.read_text())["processes"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                continue
            if len(procs) >= 2:
                return procs[0]["token"]
        time.sleep(0.1)
    raise AssertionError("the ledger never recorded the cell's processes")


def _done_cell(results: Path, method: str) -> dict | None:
    found = [json.loads(p.read_text()) for p in results.glob(f"**/fig15/{method}/2_3/0.06/cell.json")]
    return found[0] if found else None


class _Terminal:
    """A pseudo-terminal that becomes pmctl's controlling terminal (and its stdin, stdout and
    stderr); ``hang_up`` closes it, as a dropped SSH session does: the kernel sends SIGHUP to
    pmctl and every later write to the terminal fails."""

    # Runs pmctl as the leader of a new session that takes the terminal on fd 0 as its own.
    _TAKE_TTY = "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execv(sys.executable, sys.argv[1:])"

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.out = bytearray()  # what pmctl wrote, up to the hang-up
        self._hang, self._closed = threading.Event(), threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def popen(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", self._TAKE_TTY, sys.executable, *argv], stdin=self.slave,
                                stdout=self.slave, stderr=self.slave, start_new_session=True, **kwargs)
        os.close(self.slave)
        return proc

    def _drain(self) -> None:
        # Read all the time: a full terminal buffer would block pmctl's writes.
        while not self._hang.is_set():
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    self.out += os.read(self.master, 65536)
                except OSError:
                    break
        os.close(self.master)
        self._closed.set()

    def hang_up(self) -> None:
        self._hang.set()
        assert self._closed.wait(10)


@pytest.mark.slow
def test_a_hung_up_terminal_stops_the_run_like_ctrl_c(tmp_path: Path, direct_inventory: Path) -> None:
    env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=_entry(tmp_path))
    term = _Terminal()
    proc = term.popen(["-m", "pmctl", "run", *CELLS, "--inventory", str(direct_inventory)], cwd=tmp_path, env=env)
    token, left = "", []
    try:
        deadline = time.monotonic() + 120
        while _done_cell(tmp_path / "results", "1f1b") is None:
            assert proc.poll() is None and time.monotonic() < deadline, term.out.decode(errors="replace")[-3000:]
            time.sleep(0.2)
        # The 1f1b cell's run dirs are gone once its cell.json is: these op logs are zb's.
        wait_all_stages_logged([tmp_path / "work" / f"stage{i}" for i in range(4)])
        token = _ledger_token(tmp_path)
        assert any("redis-server" in c for c in _tokened(token)) and len(_tokened(token)) >= 5
        term.hang_up()  # SIGHUP, and from now on the terminal answers writes with EIO
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if token:
            left = _tokened(token)
            kill_tokened_processes(token)
    log = tmp_path / ".pmctl" / "pmctl.log"
    assert proc.returncode == 130, log.read_text() if log.exists() else term.out.decode(errors="replace")[-3000:]
    assert left == []  # no stage, no redis-server of the run
    assert _ledger_entries(tmp_path) == []
    assert _done_cell(tmp_path / "results", "1f1b")["status"] == "done"
    zb = _done_cell(tmp_path / "results", "zb")
    assert zb["status"] == "interrupted" and "SIGHUP" in zb["reason"]
    assert not list((tmp_path / "work").glob("*/runs/*"))


def test_a_call_abandoned_at_its_timeout_does_not_hold_up_exit() -> None:
    # A fan-out call stuck for good (as on a host that stopped answering): the fan-out
    # reports it at its timeout, and the process still exits at once.
    code = ("import threading; from pmctl.fanout import fanout; "
            "print(type(fanout(['h2'], lambda h: threading.Event().wait(), 0.2)[0].error).__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0 and r.stdout.strip() == "FanoutTimeout", r.stderr


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.timeout(180)
def test_a_vanished_host_is_unreachable_and_named(netns_cluster: NetnsCluster) -> None:
    from pmctl.inventory import load_inventory
    from pmctl.transport.base import HostUnreachable
    from pmctl.transport.ssh import SshTransport

    inv = load_inventory(netns_cluster.inventory)
    t = SshTransport(inv.hosts[3], inv.cluster.known_hosts, inv.cluster.connect_timeout)
    try:
        assert t.run("true", 10).ok
        set_host_link(netns_cluster, 3, up=False)
        try:
            # a long deadline for the command: the dead link, not the deadline, ends the call
            with pytest.raises(HostUnreachable, match=r"host h3 .*unreachable"):
                t.run("sleep 1", 600)
            assert t.lost is not None
            with pytest.raises(HostUnreachable, match="host h3"):
                t.run("true", 10)  # no new attempt: it fails at once
        finally:
            set_host_link(netns_cluster, 3, up=True)
    finally:
        t.close()


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.timeout(180)
def test_a_command_past_its_timeout_fails_alone(netns_cluster: NetnsCluster) -> None:
    # One thread's command runs past its timeout on a live host: that call fails (a plain
    # TransportError), the other thread's call on the same connection goes on.
    from pmctl.inventory import load_inventory
    from pmctl.transport.base import HostUnreachable, TransportError
    from pmctl.transport.ssh import SshTransport

    inv = load_inventory(netns_cluster.inventory)
    t = SshTransport(inv.hosts[1], inv.cluster.known_hosts, inv.cluster.connect_timeout)
    try:
        assert t.run("true", 10).ok  # one connection, shared by both threads
        other: list = []
        long = threading.Thread(target=lambda: other.append(t.run("sleep 4; echo finished", 60)))
        long.start()
        time.sleep(0.5)
        try:  # the command ends by itself on the host soon after
            # invoke may also return the closed channel's -1 instead of raising (a race in it)
            assert not t.run("sleep 6", 1).ok
        except HostUnreachable:
            raise
        except TransportError:
            pass  # the usual way: CommandTimedOut, the host answers
        long.join(60)
        assert other and other[0].ok and other[0].stdout.strip() == "finished", other
        assert t.lost is None and t.run("true", 10).ok
    finally:
        t.close()


@pytest.mark.slow
@pytest.mark.root
def test_a_vanished_host_ends_the_run_naming_it(netns_cluster: NetnsCluster, tmp_path: Path) -> None:
    # Three cells of 200 s on four SSH hosts; h2 drops off the network during the first one.
    env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=_entry(tmp_path))
    inv = netns_cluster.write_inventory(tmp_path / "inv.toml", launcher="direct")
    args = ["fig15", "--quick", "--methods", "zb,pipemorph,pipemorph-cpu", "--delays", "60", "--iters", "200",
            "--fault-at", "1", "--preset", "tiny", "--json", "--inventory", str(inv)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pmctl", "run", *args], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    token = ""
    try:
        wait_all_stages_logged(netns_cluster.work_dirs())
        token = _ledger_token(tmp_path)
        set_host_link(netns_cluster, 2, up=False)
        try:
            out, err = proc.communicate(timeout=240)  # generous: the point is that it ends
        finally:
            set_host_link(netns_cluster, 2, up=True)
        assert proc.returncode == 2, out + err
        lines = err.strip().splitlines()
        named = [ln for ln in lines if "h2" in ln and "unreachable" in ln and "not run" in ln]
        assert len(named) == 1 and named[0] == lines[-1], err
        events = [json.loads(ln) for ln in out.splitlines()]
        cells = [e for e in events if e["type"] == "cell"]
        assert [c["status"] for c in cells] == ["failed", "not_run", "not_run"], cells
        assert "h2" in cells[0]["reason"]
        assert events[-1]["type"] == "summary" and events[-1]["not_run"] == 2 and events[-1]["exit_code"] == 2
        # Only the first cell was attempted.
        (attempted,) = [p.parent for p in tmp_path.glob("results/**/cell.json")]
        assert str(attempted).endswith(cells[0]["cell"])
        # The live hosts' stages were stopped; h2's, cut off, still run: the ledger keeps
        # them, and pmctl stop gets them now that h2 is back.
        assert all(c.startswith("h2:") for c in netns_cluster.our_processes()), netns_cluster.our_processes()
        assert _ledger_entries(tmp_path)
        stop = run_pmctl(["stop"], tmp_path, pmctl_env(tmp_path), timeout=120)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert netns_cluster.our_processes() == []
        # h2's run dir holds the only copy of its logs: kept and listed, removed by --purge
        left = [d for w in netns_cluster.work_dirs() for d in (w / "runs").glob("*")]
        assert [d.parent.parent.name for d in left] == ["h2"] and str(left[0]) in stop.stdout, stop.stdout
        purge = run_pmctl(["stop", "--purge"], tmp_path, pmctl_env(tmp_path), timeout=120)
        assert purge.returncode == 0, purge.stdout + purge.stderr
        assert not [d for w in netns_cluster.work_dirs() for d in (w / "runs").glob("*")]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if token:
            kill_tokened_processes(token)  # whatever a failed check left, in any namespace
