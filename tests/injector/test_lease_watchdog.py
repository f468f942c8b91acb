"""The control plane's lease: the watchdog beside Redis times the lease by its own clock (a
lease file's mtime on NFS is the file server's clock, which may be hours off), and pmctl's
renewing thread outlives any error of one renewal."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pmctl.controlplane import Lease, watched_command
from pmctl.inventory import Host
from pmctl.transport.base import Result
from pmctl.transport.local import LocalTransport

HOUR = 3600.0


def _watched(tmp_path: Path, lease_s: float) -> subprocess.Popen[str]:
    """``sleep 120`` under the watchdog, in its own group (the test kills it at the end)."""
    return subprocess.Popen(["bash", "-c", watched_command("sleep 120", "lease", lease_s)], cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _ended(proc: subprocess.Popen[str], within_s: float = 60) -> bool:
    try:
        proc.wait(within_s)  # generous: a loaded machine; the lease is a few seconds
    except subprocess.TimeoutExpired:
        return False
    return True


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_lease_dated_by_a_clock_ahead_still_runs_out(tmp_path: Path) -> None:
    # the file server's clock an hour ahead: the mtime is "in the future" and never renewed
    lease = tmp_path / "lease"
    lease.write_text("")
    os.utime(lease, (time.time() + HOUR, time.time() + HOUR))
    proc = _watched(tmp_path, 1)
    try:
        assert _ended(proc), "the watchdog never stopped its command: it trusted the server's clock"
        assert "renewed no lease" in proc.stderr.read()
    finally:
        _kill(proc)


def test_a_lease_renewed_by_a_clock_behind_keeps_the_command_up(tmp_path: Path) -> None:
    # the file server's clock an hour behind: every renewal sets an old mtime, but it changes
    lease = tmp_path / "lease"
    lease.write_text("")
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(0.2):
            t = time.time() - HOUR
            os.utime(lease, (t, t))

    os.utime(lease, (time.time() - HOUR, time.time() - HOUR))
    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    proc = _watched(tmp_path, 2)
    try:
        time.sleep(5)  # more than two leases
        assert proc.poll() is None, "the watchdog stopped a renewed lease: it compared the server's clock with its own"
        stop.set()
        renewer.join()
        assert _ended(proc), "the lease was not renewed any more, yet the command ran on"
    finally:
        stop.set()
        _kill(proc)


class _FlakyTransport(LocalTransport):
    """The local transport, except that its first ``fails`` calls raise an error that is not
    a ``TransportError`` (a bug, say)."""

    def __init__(self, host: Host, fails: int) -> None:
        super().__init__(host)
        self.fails = fails

    def run(self, cmd: str, timeout: float) -> Result:
        if self.fails > 0:
            self.fails -= 1
            raise ValueError("an unexpected error in one renewal")
        return super().run(cmd, timeout)


def test_an_unexpected_error_in_one_renewal_does_not_end_the_renewals(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMCTL_STATE_DIR", str(tmp_path / "state"))
    lease = tmp_path / "lease"
    lease.write_text("")
    os.utime(lease, (1.0, 1.0))
    t = _FlakyTransport(Host("m", "127.0.0.1", 0, str(tmp_path), "python3"), fails=2)
    renewer = Lease(t, str(lease), 0.6)  # a renewal every 0.1 s
    renewer.start()
    try:
        deadline = time.monotonic() + 60
        while lease.stat().st_mtime == 1.0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        renewer.stop()
    assert t.fails == 0 and lease.stat().st_mtime != 1.0, "the renewals ended with the first unexpected error"
    log = (tmp_path / "state" / "pmctl.log").read_text()
    assert log.count("lease failed") == 1, log  # once per streak of failures
    assert "ValueError: an unexpected error in one renewal" in log  # with its traceback
