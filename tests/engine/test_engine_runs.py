"""End-to-end torchrun jobs on 4 local stages (tiny preset, gloo): a 20-iteration run that
trains, switches path and schedule under an injected delay, and writes complete, causal op
logs; a crashing stage ends the whole run promptly with a non-zero status."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest

from engine.oplog import iteration_times_ms, read_records

N = 6


def _check_complete(records, stages: int, iterations: int) -> None:
    ops = defaultdict(Counter)
    for r in records:
        if r["kind"] == "op":
            ops[(r["iter"], r["stage"])][r["op"]] += 1
    for it in range(iterations):
        for s in range(stages):
            c = ops[(it, s)]
            assert c["F"] == N and c["STEP"] == 1, (it, s, c)
            assert (c["B"], c["W"], c["BW"]) in ((N, N, 0), (0, 0, N)), (it, s, c)
            if s > 0:
                assert c["RECV_F"] == N and c["SEND_B"] == N, (it, s, c)
            if s < stages - 1:
                assert c["SEND_F"] == N and c["RECV_B"] == N, (it, s, c)


def _check_causal(records) -> None:
    end = {}
    for r in records:
        if r["kind"] == "op":
            end[(r["iter"], r["stage"], r["op"], r["mb"])] = r
    eps = 0.01  # ms: log rounding
    for (it, s, op, mb), r in end.items():
        assert r["start_ms"] >= -eps and r["end_ms"] >= r["start_ms"] - eps
        if op == "F" and s > 0:
            assert r["start_ms"] >= end[(it, s - 1, "F", mb)]["end_ms"] - eps, r
        if op == "RECV_F":
            sent = end[(it, s - 1, "SEND_F", mb)]
            assert r["end_ms"] >= sent["start_ms"] - eps and r["sent_ms"] == sent["start_ms"]
        if op == "B" and (it, s + 1, "B", mb) in end:
            assert r["start_ms"] >= end[(it, s + 1, "B", mb)]["end_ms"] - eps, r


@pytest.mark.slow
def test_twenty_iterations_train_adapt_and_log(torchrun, tmp_path):
    out = tmp_path / "log"
    res = torchrun(["--preset", "tiny", "--method", "pipemorph", "--iterations", "20",
                    "--microbatches", str(N), "--lr", "0.01", "--links", "2_3", "--delay", "0.01", "--fault-at", "8",
                    "--out", str(out)], timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [l.split() for l in res.stdout.splitlines()]
    assert [int(l[1]) for l in lines] == list(range(20))  # one summary line per iteration
    losses = [float(l[3]) for l in lines]
    assert losses[-1] < losses[0] - 0.3, losses
    records = read_records(out)
    _check_complete(records, 4, 20)
    _check_causal(records)
    assert set(iteration_times_ms(records)) == set(range(20))
    heads = {r["iter"]: r for r in records if r["kind"] == "iteration" and r["stage"] == 0}
    assert [heads[i]["offload"] for i in range(20)] == [False] * 8 + [True] * 12
    assert heads[8]["schedule"] == heads[0]["schedule"]  # offload at once ...
    assert heads[9]["schedule"] != heads[0]["schedule"]  # ... the adapted plan next iteration
    assert heads[9]["costs"] is not None and heads[7]["profiled"] is not None
    delayed = [r for r in records if r["kind"] == "op" and r["op"] == "SEND_F"
               and r["stage"] == 2 and r["iter"] >= 8]
    assert delayed and all(r["delay_ms"] == 10.0 and r["path"] == "delegate" for r in delayed)
    assert "clock_offsets_ms" in heads[0]


@pytest.mark.slow
def test_stage_crash_fails_the_run_promptly(torchrun, tmp_path):
    # gloo would wait 600 s on the dead peer: only the abort path ends the job in time
    res = torchrun(["--preset", "tiny", "--iterations", "50", "--microbatches", str(N),
                    "--crash-at", "2:3", "--timeout", "600", "--out", str(tmp_path)],
                   timeout=100)
    assert res.returncode != 0
    assert "crash injected on stage 2 at iteration 3" in res.stderr
    its = {json.loads(l)["iter"] for l in (tmp_path / "stage2.jsonl").read_text().splitlines()}
    assert its == {0, 1, 2}


@pytest.mark.slow
def test_inline_send_on_crashed_link_fails_with_link_down(torchrun, tmp_path):
    res = torchrun(["--preset", "tiny", "--method", "zb", "--iterations", "50",
                    "--microbatches", str(N), "--links", "1_2", "--delay", "inf", "--fault-at", "2", "--timeout", "600",
                    "--out", str(tmp_path)], timeout=100)
    assert res.returncode != 0
    assert "link 1 (1_2) is down" in res.stderr
