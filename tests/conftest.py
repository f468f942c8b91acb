"""Shared fixtures: a real password-protected redis-server per test module (always shut
down) and an environment without control-plane passwords."""

from __future__ import annotations

import shutil

import pytest

from injector.redis_server import RedisServer


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
