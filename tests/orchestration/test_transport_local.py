"""The local transport: detached process groups that stop completely, exit codes, env files
that keep secrets off the command line, and stop that only touches groups carrying our token."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from pmctl.inventory import Host
from pmctl.transport.local import LocalTransport


@pytest.fixture
def transport(tmp_path: Path):
    t = LocalTransport(Host("h0", "127.0.0.1", 0, str(tmp_path / "work"), "python3"))
    handles = []
    original = t.start

    def start(*args, **kwargs):
        h = original(*args, **kwargs)
        handles.append(h)
        return h

    t.start = start  # type: ignore[method-assign]
    yield t
    for h in handles:  # never leave a process behind, even when an assertion failed
        try:
            os.killpg(h.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    t.close()


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(d.name))
    return pids


def _wait(pred, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_stop_kills_the_whole_group_including_children(transport: LocalTransport, tmp_path: Path) -> None:
    # A parent with two children, one of which ignores SIGTERM: only KILL ends it.
    cmd = "sleep 300 & (trap '' TERM; sleep 300) & wait"
    h = transport.start("job", cmd, {}, str(tmp_path / "run"), "tok1")
    assert _wait(lambda: len(_group_pids(h.pgid)) >= 3)
    assert transport.alive(h) and transport.poll(h) is None
    transport.stop(h, grace=0.5)
    assert _group_pids(h.pgid) == []
    assert not transport.alive(h)
    transport.stop(h, grace=0.5)  # idempotent


def test_exit_code_and_output_are_recorded(transport: LocalTransport, tmp_path: Path) -> None:
    h = transport.start("job", "echo out; echo err >&2; exit 7", {}, str(tmp_path / "run"), "tok2")
    assert _wait(lambda: transport.poll(h) is not None)
    assert transport.poll(h) == 7
    assert Path(h.out_path).read_text() == "out\n"
    assert Path(h.err_path).read_text() == "err\n"
    assert _wait(lambda: not transport.alive(h))


def test_secrets_travel_in_a_private_env_file_not_argv(transport: LocalTransport, tmp_path: Path) -> None:
    h = transport.start("job", 'echo "$SECRET" > seen; sleep 300', {"SECRET": "s3cr3t value"}, str(tmp_path / "run"), "tok3")
    assert _wait(lambda: (tmp_path / "run" / "seen").exists() and (tmp_path / "run" / "seen").read_text())
    assert (tmp_path / "run" / "seen").read_text() == "s3cr3t value\n"
    env_file = tmp_path / "run" / "job.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    for pid in _group_pids(h.pgid):
        assert b"s3cr3t" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    transport.stop(h, grace=0.5)


def test_stop_leaves_a_group_without_our_token_alone(transport: LocalTransport, tmp_path: Path) -> None:
    h = transport.start("job", "sleep 300", {}, str(tmp_path / "run"), "tokA")
    assert _wait(lambda: len(_group_pids(h.pgid)) >= 2)
    # Same pgid, wrong token: e.g. a recycled pgid recorded by an older run.
    from dataclasses import replace

    transport.stop(replace(h, token="other"), grace=0.5)
    assert _group_pids(h.pgid)
    assert not transport.alive(replace(h, token="other"))
    transport.stop(h, grace=0.5)
    assert _group_pids(h.pgid) == []


def test_write_text_is_private_from_creation(transport: LocalTransport, tmp_path: Path) -> None:
    target = tmp_path / "d" / "password"
    transport.write_text(str(target), "pw\n")
    assert target.read_text() == "pw\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    r = transport.run("echo hi; exit 3", 10)
    assert (r.rc, r.stdout) == (3, "hi\n")


def test_token_sweep_stops_what_no_recorded_group_covers(transport: LocalTransport, tmp_path: Path) -> None:
    import subprocess

    from pmctl.transport.base import TOKEN_VAR, token_sweep_script

    # A process of ours in a session of its own (as torchrun puts its workers), never recorded.
    stray = subprocess.Popen(["sleep", "60"], env={**os.environ, TOKEN_VAR: "feedbeef"}, start_new_session=True)
    other = subprocess.Popen(["sleep", "60"], env={**os.environ, TOKEN_VAR: "0ther"}, start_new_session=True)
    try:
        assert transport.run(token_sweep_script("feedbeef", 1.0), 30).ok
        assert stray.wait(timeout=10) == -signal.SIGTERM
        assert other.poll() is None  # another run's token: left alone
    finally:
        for p in (stray, other):
            p.kill()
            p.wait()
