"""The control plane against a real redis-server: auth, namespacing, atomic faults,
heartbeats, errors, and the password never on a command line."""

from __future__ import annotations

import math
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from injector.control import ControlClient, ControlPlaneError
from injector.redis_server import RedisServer, render_config
from injector.trace import Fault


def test_render_config_is_protected_and_ephemeral():
    text = render_config(["10.1.2.3"], 7000, "s3cret", "/w")
    lines = text.splitlines()
    assert "bind 10.1.2.3 127.0.0.1" in lines
    assert "protected-mode yes" in lines and not any("requirepass" in line for line in lines)
    assert "s3cret" not in text  # the ACL holds the password's SHA-256 only
    assert any(line.startswith("user pmctl on #") for line in lines)
    assert 'save ""' in lines and "appendonly no" in lines
    assert 'pidfile "/w/redis.pid"' in lines and 'logfile "/w/redis.log"' in lines
    with pytest.raises(ValueError):
        render_config([], 7000, 'bad"pw', "/w")


def test_password_holders_get_no_config_or_debug(redis_server):
    import redis

    r = redis.Redis(host="127.0.0.1", port=redis_server.port, username="pmctl", password=redis_server.password)
    try:
        assert r.ping()
        for command in (("CONFIG", "GET", "dir"), ("DEBUG", "SLEEP", "0")):
            with pytest.raises(redis.ResponseError, match="no permissions|not allowed"):
                r.execute_command(*command)
    finally:
        r.close()


def test_server_files_are_private(redis_server):
    for name in ("redis.conf", "password"):
        mode = stat.S_IMODE(os.stat(redis_server.workdir / name).st_mode)
        assert mode == 0o600, (name, oct(mode))


def test_password_never_on_any_command_line(redis_server, clean_env):
    needle = redis_server.password.encode()
    seen = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        seen += 1
        assert needle not in cmdline, f"password visible in /proc/{proc.name}/cmdline"
    assert seen > 1
    # the server we are checking is really up and really needs that password
    ControlClient(redis_server.url, "cmdline", password=redis_server.password).ping()


def test_missing_password_is_a_clear_error(redis_server, clean_env):
    client = ControlClient(redis_server.url, "auth")
    with pytest.raises(ControlPlaneError, match="requires a password.*PMCTL_CONTROL_PASSWORD"):
        client.read_fault()


def test_wrong_password_is_a_clear_error(redis_server, clean_env):
    client = ControlClient(redis_server.url, "auth", password="not-the-password")
    with pytest.raises(ControlPlaneError, match="rejected the password"):
        client.ping()


def test_password_from_file_and_from_env(redis_server, clean_env):
    clean_env.setenv("PMCTL_CONTROL_PASSWORD_FILE", str(redis_server.password_file))
    ControlClient(redis_server.url, "auth").ping()
    # a password exported in the shell for something else does not replace the run's file
    clean_env.setenv("PMCTL_CONTROL_PASSWORD", "exported-for-something-else")
    ControlClient(redis_server.url, "auth").ping()
    clean_env.setenv("PMCTL_CONTROL_PASSWORD_FILE", "/nonexistent/pw")  # a named file must be read
    with pytest.raises(ControlPlaneError, match="cannot read the control-plane password file"):
        ControlClient(redis_server.url, "auth")
    clean_env.delenv("PMCTL_CONTROL_PASSWORD_FILE")
    clean_env.setenv("PMCTL_CONTROL_PASSWORD", redis_server.password)
    ControlClient(redis_server.url, "auth").ping()  # no file named: the variable


def test_unreachable_and_bad_urls(clean_env):
    from injector.redis_server import free_port

    client = ControlClient(f"redis://127.0.0.1:{free_port()}", "x", password="p")
    with pytest.raises(ControlPlaneError, match="cannot reach the control plane"):
        client.ping()
    with pytest.raises(ControlPlaneError, match="must not carry the password"):
        ControlClient("redis://:pw@127.0.0.1:1234", "x")
    with pytest.raises(ControlPlaneError, match="bad control-plane URL"):
        ControlClient("http://127.0.0.1:1234", "x")


def test_fault_round_trip_and_namespacing(redis_server, clean_env):
    a = ControlClient(redis_server.url, "run-a", password=redis_server.password)
    b = ControlClient(redis_server.url, "run-b", password=redis_server.password)
    assert a.read_fault() is None
    fault = Fault.uniform(((2, 3),), 0.06, since_iteration=7, epoch=1)
    a.publish_fault(fault, published_by=0)
    assert a.read_fault() == fault
    assert b.read_fault() is None  # another run's namespace is untouched
    crash = Fault.uniform(((0, 1), (2, 3)), math.inf, since_iteration=9, epoch=2)
    b.publish_fault(crash)
    assert b.read_fault() == crash and a.read_fault() == fault
    # per-link delays (one down) and then a NIC crash replace it whole
    mixed = Fault(((0, 1), (1, 2)), (0.03, math.inf), since_iteration=10, epoch=3, at_s=4.5)
    b.publish_fault(mixed)
    assert b.read_fault() == mixed and b.read_fault().link_delays_s(4) == (0.03, math.inf, 0.0)
    nic = Fault(nic_crash=True, since_iteration=11, epoch=4)
    b.publish_fault(nic)
    assert b.read_fault() == nic and b.read_fault().link_delays_s(4) == (math.inf,) * 3
    b.publish_fault(crash)
    assert a.key("fault") == "pmctl:run-a:fault"
    assert a.clear() >= 1 and a.read_fault() is None and b.read_fault() == crash


def test_fault_update_is_atomic_under_a_concurrent_writer(redis_server, clean_env):
    """Every read sees one whole update: epoch, iteration, links, per-link delays and the
    NIC-crash flag always agree."""
    pw = redis_server.password
    writer = ControlClient(redis_server.url, "atomic", password=pw)
    reader = ControlClient(redis_server.url, "atomic", password=pw)

    def fault_for(epoch: int) -> Fault:
        if epoch % 4 == 3:
            return Fault(nic_crash=True, since_iteration=epoch * 2, epoch=epoch, at_s=epoch / 8)
        a, b = epoch % 3, (epoch + 1) % 3
        second = math.inf if epoch % 2 else epoch / 500
        return Fault(((a, a + 1), (b, b + 1)), (epoch / 1000, second), False, epoch * 2, epoch)

    writer.publish_fault(fault_for(0))
    stop = threading.Event()

    def write() -> None:
        epoch = 1
        while not stop.is_set():
            writer.publish_fault(fault_for(epoch))
            epoch += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        epochs = set()
        for _ in range(600):
            got = reader.read_fault()
            assert got == fault_for(got.epoch), f"torn fault read: {got}"
            epochs.add(got.epoch)
    finally:
        stop.set()
        thread.join()
    assert len(epochs) > 5  # the reads really interleaved with many writes


def test_heartbeats_errors_detected_and_status(redis_server, clean_env):
    c = ControlClient(redis_server.url, "hb", password=redis_server.password)
    other = ControlClient(redis_server.url, "hb-other", password=redis_server.password)
    assert c.heartbeats() == {}
    c.heartbeat(1, 3, "iteration", 412.5, method="pipemorph")
    c.heartbeat(0, 4, "iteration", None)
    c.heartbeat(1, 4, "done", 400.0, offload=True)
    other.heartbeat(2, 0, "start", None)
    hb = c.heartbeats()
    assert list(hb) == [0, 1]
    assert hb[1]["iteration"] == 4 and hb[1]["phase"] == "done"
    assert hb[1]["last_iteration_ms"] == 400.0 and hb[1]["offload"] is True
    assert hb[0]["last_iteration_ms"] is None and hb[0]["time"] > 0
    # A silent stage disappears eventually: its heartbeat expires.
    clean_env.setattr("injector.control.HEARTBEAT_TTL_S", 1)
    silent = ControlClient(redis_server.url, "hb-silent", password=redis_server.password)
    silent.heartbeat(0, 1, "iteration", None)
    time.sleep(1.5)
    assert silent.heartbeats() == {} and list(c.heartbeats()) == [0, 1]

    c.report_error(3, "link 2_3 is down")
    c.report_error(2, "peer gone")
    assert [(e["stage"], e["message"]) for e in c.errors()] == [
        (3, "link 2_3 is down"),
        (2, "peer gone"),
    ]
    assert other.errors() == []

    detected = Fault(((0, 1), (2, 3)), (0.021, 0.058), since_iteration=8, epoch=1)
    c.publish_detected(detected, iteration=8, link_excess_ms=[0.1, 0.0, 58.0], lag=1)
    got = c.read_detected()
    assert got["fault"] == detected and got["link_excess_ms"] == [0.1, 0.0, 58.0]
    assert got["lag"] == 1

    c.set_status(state="running", cell="fig15/zb")
    c.set_status(state="done")
    assert c.status() == {"state": "done", "cell": "fig15/zb"}


def test_server_stop_leaves_nothing_behind(tmp_path, clean_env):
    server = RedisServer(workdir=tmp_path / "w")
    server.start()
    pid = server.pid
    client = ControlClient(server.url, "stop", password=server.password)
    client.ping()
    server.stop()
    assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)
    assert list((tmp_path / "w").iterdir()) == []
    with pytest.raises(ControlPlaneError, match="cannot reach"):
        client.ping()

    with RedisServer() as auto:  # own temp dir, removed on exit
        workdir = auto.workdir
        assert workdir.exists()
    assert not workdir.exists()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
