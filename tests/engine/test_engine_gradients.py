"""Pipelined gradients equal the unpipelined single-process model (float64), for every
method's schedule and every generator's, on both p2p paths; delegates match inline bit for
bit. One torchrun job replays a script of plans (one schedule per iteration, lr 0, the same
data every iteration), so every iteration must reproduce the same reference gradients."""

from __future__ import annotations

import json

import pytest
import torch

from engine.planner.costs import StageCosts
from engine.planner.generators import generate
from tests.engine.reference_model import SEED, assert_iteration_matches


def _plans(s: int, n: int) -> list[tuple[str, dict]]:
    uni = StageCosts.uniform(s, 1.0, 1.0, 1.0)
    slow = tuple(0.0 if i < s - 2 else 4.0 for i in range(s - 1))  # planned delay, cost units
    real = [0.0] * (s - 1)
    real[-1] = 0.004  # a real injected delay on the last link (seconds)

    def entry(sched, offload, delays=None):
        return {"schedule": sched.to_lists(), "offload": offload,
                "delays_s": delays or [0.0] * (s - 1)}

    adapted = generate("pipemorph", s, n, uni, plan_delays=slow)
    assert adapted.warmup() != generate("zb", s, n, uni).warmup()  # really adapted
    return [
        ("1f1b inline", entry(generate("1f1b", s, n, uni), False)),
        ("zb inline", entry(generate("zb", s, n, uni), False)),
        ("zb delegates", entry(generate("zb", s, n, uni), True)),
        ("greedy inline delayed", entry(generate("greedy", s, n, uni, plan_delays=slow),
                                        False, real)),
        ("pipemorph delegates delayed", entry(adapted, True, real)),
        ("1f1b delegates", entry(generate("1f1b", s, n, uni), True)),
        ("pipemorph+ inline", entry(generate("pipemorph+", s, n, uni, plan_delays=slow), False)),
    ]


def _check_run(torchrun, tmp_path, stages: int, n: int, launcher: str = "torchrun") -> None:
    plans = _plans(stages, n)
    script = tmp_path / "plans.json"
    script.write_text(json.dumps([e for _, e in plans]))
    dump = tmp_path / "grads"
    res = torchrun(["--preset", "tiny", "--dtype", "float64", "--lr", "0", "--fixed-data",
                    "--seed", str(SEED), "--microbatches", str(n), "--iterations",
                    str(len(plans)), "--plan-script", str(script), "--delegates", "2",
                    "--dump-grads", str(dump), "--out", str(tmp_path / "log")],
                   nproc=stages, timeout=150, launcher=launcher)
    assert res.returncode == 0, res.stderr[-3000:]
    per_iter = []
    for it, (label, _) in enumerate(plans):
        got = assert_iteration_matches(dump, it, stages, n, label)
        per_iter.append(got)
    inline, delegated = per_iter[1], per_iter[2]  # same schedule, both paths
    assert all(torch.equal(inline[k], delegated[k]) for k in inline)
    # the log says which path each iteration used
    recs = [json.loads(l) for l in (tmp_path / "log" / "stage1.jsonl").read_text().splitlines()]
    paths = {r["iter"]: r["path"] for r in recs if r["kind"] == "op" and r["op"] == "F"}
    assert paths[1] == "inline" and paths[2] == "delegate"
    _check_delays(tmp_path / "log", stages)


def _check_delays(log, stages: int) -> None:
    """The 4 ms on the last link: inline it blocks the sender's compute thread before each
    send (head-of-line); on delegates it delays delivery but not the sender."""
    sender = stages - 2
    recs = [json.loads(l) for l in (log / f"stage{sender}.jsonl").read_text().splitlines()]
    ops = sorted((r for r in recs if r["kind"] == "op" and r["iter"] == 3),
                 key=lambda r: r["start_ms"])
    sends = [i for i, r in enumerate(ops) if r["op"] == "SEND_F"]
    assert sends and all(ops[i]["delay_ms"] == 4.0 for i in sends)
    for i in sends:
        after = [r for r in ops[i + 1:] if r["op"] in ("F", "B", "W", "BW")]
        if after:  # the next compute op waited for the delay
            assert after[0]["start_ms"] >= ops[i]["start_ms"] + 4.0 - 0.01
    last = [json.loads(l) for l in (log / f"stage{stages - 1}.jsonl").read_text().splitlines()]
    recvs = [r for r in last if r["kind"] == "op" and r["iter"] == 4 and r["op"] == "RECV_F"]
    assert recvs and all(r["path"] == "delegate" and r["end_ms"] >= r["sent_ms"] + 4.0 - 0.01
                         for r in recvs)


@pytest.mark.slow
def test_four_stages_match_reference(torchrun, tmp_path):
    _check_run(torchrun, tmp_path, stages=4, n=6)


@pytest.mark.slow
def test_two_forked_stages_match_reference(torchrun, tmp_path):
    # engine.forkrun: stages forked from one process that imported torch compute the same.
    _check_run(torchrun, tmp_path, stages=2, n=4, launcher="fork")
