"""Fixtures for the engine tests: real torchrun (or engine.forkrun) jobs on gloo, always torn
down (``tests.jobs``)."""

from __future__ import annotations

import pytest

from tests.jobs import JobResult, run_job


@pytest.fixture
def torchrun():
    """Runs ``engine.train`` jobs under torchrun (own port, own session), or with
    ``launcher="fork"`` the same job under engine.forkrun."""

    def run(args: list[str], nproc: int = 4, timeout: float = 120.0, launcher: str = "torchrun") -> JobResult:
        return run_job(args, nproc, timeout, launcher)

    return run
