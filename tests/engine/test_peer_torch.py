"""Our ZB plan, exported as torch's action CSV, run by torch.distributed.pipelining's
``_PipelineScheduleRuntime`` (through ``bench/bench_peer.py``) trains to the same losses as our
engine run as pmctl runs it (``engine.forkrun -m engine.train``), in float64."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.oplog import read_typed
from tests.conftest import torch_pipelining_runtime

REPO = Path(__file__).resolve().parents[2]

ITERS = 2  # the second iteration's loss also checks the optimizer step of the first


@pytest.mark.slow
def test_torch_runtime_runs_our_zb_plan_to_the_engines_losses(torchrun, tmp_path):
    torch_pipelining_runtime()
    res = torchrun(["--preset", "tiny", "--method", "zb", "--dtype", "float64", "--pace", "off",
                    "--iterations", str(ITERS), "--out", str(tmp_path / "engine")],
                   nproc=4, timeout=120, launcher="fork")
    assert res.returncode == 0, res.stderr[-3000:]
    _, heads = read_typed(tmp_path / "engine")
    engine = [h.loss for h in sorted((h for h in heads if h.stage == 3), key=lambda h: h.iteration)]
    assert len(engine) == ITERS and all(isinstance(x, float) for x in engine)

    bench = subprocess.run(
        [sys.executable, "bench/bench_peer.py", "--preset", "tiny", "--stages", "4", "--methods", "zb",
         "--warmup", "0", "--iters", str(ITERS), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bench.returncode == 0, bench.stderr[-3000:]
    zb = json.loads(bench.stdout.strip().splitlines()[-1])["methods"]["zb"]
    assert zb["schedule_csv"].splitlines()[3].startswith("3F0,3I0,3F1,3I1")
    theirs, ours = zb["sides"]["torch"]["loss"], zb["sides"]["ours"]["loss"]
    for it in range(ITERS):
        assert ours[it] == pytest.approx(engine[it], rel=1e-12), it  # the bench runs our engine
        assert theirs[it] == pytest.approx(engine[it], rel=1e-9), it
    assert engine[1] != engine[0]  # the step moved the weights
