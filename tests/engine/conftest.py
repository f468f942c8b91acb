"""Fixtures for the engine tests: real torchrun jobs on gloo, always torn down."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def torchrun():
    """Runs ``torchrun --standalone``-style jobs (own port, own process group), or with
    ``launcher="fork"`` the same job under engine.forkrun; kills any survivor at teardown."""
    procs: list[subprocess.Popen] = []

    def run(args: list[str], nproc: int = 4, timeout: float = 120.0, launcher: str = "torchrun") -> RunResult:
        if launcher == "fork":
            launch = ["engine.forkrun", "--master-port", str(_free_port())]
        else:
            launch = ["torch.distributed.run", "--rdzv-backend", "c10d",
                      "--rdzv-endpoint", f"127.0.0.1:{_free_port()}"]
        cmd = [sys.executable, "-m", *launch, "--nnodes", "1", "--nproc-per-node", str(nproc),
               "-m", "engine.train", *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        procs.append(p)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            pytest.fail(f"torchrun did not finish in {timeout} s:\n{err[-3000:]}")
        return RunResult(p.returncode, out, err)

    yield run
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
