"""Shared fixtures: a real password-protected redis-server per test module (always shut
down), an environment without control-plane passwords, and torch's pipelining runtime (or a
skip on a torch without it)."""

from __future__ import annotations

import shutil
import signal

import pytest

from injector.redis_server import RedisServer


def pytest_configure(config):
    """A suite started in the background of a non-interactive shell (``cmd &``) inherits
    SIGINT ignored, and so would every process the tests start: the tests that stop pmctl or
    a launcher with Ctrl-C would then wait forever. Restore the default so they test Ctrl-C."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(workdir=tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clean_env(monkeypatch):
    """No password in the environment unless the test puts one there."""
    monkeypatch.delenv("PMCTL_CONTROL_PASSWORD", raising=False)
    monkeypatch.delenv("PMCTL_CONTROL_PASSWORD_FILE", raising=False)
    return monkeypatch


def torch_pipelining_runtime():
    """torch's pipelining schedules module with the runtime our exported plans run on
    (``_PipelineScheduleRuntime``, ``_Action``); a test skips on an older torch without it."""
    schedules = pytest.importorskip("torch.distributed.pipelining.schedules")
    missing = [n for n in ("_PipelineScheduleRuntime", "_Action", "_validate_schedule", "_add_send_recv")
               if not hasattr(schedules, n)]
    if missing:
        pytest.skip(f"this torch's pipelining has no {', '.join(missing)}")
    return schedules
