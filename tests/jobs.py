"""Real multi-process engine jobs for the tests: one place that picks a free port, starts a
launcher (engine.forkrun or torchrun) in its own session, waits with a timeout and never
leaves a process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass
class JobResult:
    returncode: int
    stdout: str
    stderr: str


def free_port() -> int:
    """A TCP port free on the loopback now (for a job's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_job(args: list[str], nproc: int = 4, timeout: float = 120.0, launcher: str = "fork",
            module: str = "engine.train", env: dict[str, str] | None = None) -> JobResult:
    """Runs ``module`` with ``args`` on ``nproc`` local ranks under ``launcher`` ("fork":
    engine.forkrun; "torchrun": one torchrun agent) from the repository; a job that outlives
    ``timeout`` is killed with its whole session and fails the test."""
    if launcher == "fork":
        launch = ["engine.forkrun", "--master-port", str(free_port())]
    else:
        launch = ["torch.distributed.run", "--rdzv-backend", "c10d",
                  "--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
    cmd = [sys.executable, "-m", *launch, "--nnodes", "1", "--nproc-per-node", str(nproc),
           "-m", module, *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env or {})}
    full_env.pop("PMCTL_CONTROL_PASSWORD", None)  # a stage reads only the file it is given
    p = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"{launcher} job did not finish in {timeout} s:\n{err[-3000:]}")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return JobResult(p.returncode, out, err)
