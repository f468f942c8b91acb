"""The executor's named profiler ranges: every op, p2p wait and the step appears in a user's
``torch.profiler`` trace under its op-log name (``F0``, ``SEND_F0``, ``STEP`` ...).

The multi-process test runs a real 2-stage job under ``engine.forkrun`` with this module as
the entry: its ``main(argv)`` wraps ``engine.train.run`` in ``torch.profiler.profile()`` and
writes the names of the events each stage recorded (the way a user profiles a stage).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from engine.executor import Executor
from engine.opkind import OpKind
from tests.jobs import run_job


def main(argv: list[str]) -> None:
    """One stage under the profiler (the entry engine.forkrun calls; not a test)."""
    from engine.config import parse_config
    from engine.train import run

    cfg = parse_config(argv)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(cfg, {})
    names = sorted({e.name for e in prof.events()})
    (Path(cfg.out) / f"profile{os.environ['RANK']}.json").write_text(json.dumps(names))


def test_range_names_follow_the_op_log() -> None:
    executor = SimpleNamespace(cfg=SimpleNamespace(device=torch.device("cpu")))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for kind, mb in ((OpKind.F, 3), (OpKind.BW, 0), (OpKind.RECV_B, 11), (OpKind.STEP, -1)):
            with Executor._range(executor, kind, mb):  # type: ignore[arg-type]
                torch.ones(2).sum()
    names = {e.name for e in prof.events()}
    assert {"F3", "BW0", "RECV_B11", "STEP"} <= names


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_profiled_two_stage_job_shows_every_op_by_name(tmp_path: Path) -> None:
    res = run_job(["--preset", "tiny", "--stages", "2", "--method", "zb", "--iterations", "2",
                   "--microbatches", "2", "--out", str(tmp_path), "--timeout", "30"],
                  nproc=2, timeout=90, module="tests.engine.test_profiler_ranges")
    assert res.returncode == 0, res.stderr[-3000:]
    first, last = (set(json.loads((tmp_path / f"profile{s}.json").read_text())) for s in (0, 1))
    for mb in (0, 1):
        assert {f"F{mb}", f"B{mb}", f"W{mb}", f"SEND_F{mb}", f"RECV_B{mb}", "STEP"} <= first
        assert {f"F{mb}", f"B{mb}", f"W{mb}", f"RECV_F{mb}", f"SEND_B{mb}", "STEP"} <= last
