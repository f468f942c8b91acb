"""Every method trains correctly under NCCL's p2p rules, emulated on gloo
(``--p2p-semantics nccl``: tags ignored, issue order per communicator, one op at a time, sends
complete only when matched): at 4 and 8 stages, through a healthy -> slow link -> cleared
timeline and through a NIC crash. Gradients (float64, lr 0, the same data every iteration)
equal the unpipelined model's in every iteration, whichever path and schedule it ran.

And the layout before per-link groups (every link on the main group, each stage posting its
receives from a neighbour before its sends to it) deadlocks under the emulation at iteration
0 and is reported in one line within the watchdog's time, while gloo's native matching runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import P2P_SEMANTICS_ENV
from engine.methods import METHODS
from engine.oplog import read_records
from tests.engine.reference_model import SEED, assert_iteration_matches
from tests.jobs import run_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SLOW_FROM, CLEAR_AT, ITERS = 2, 4, 6  # healthy 0-1, last link 20 ms slow 2-3, healthy 4-5
CRASH_AT, CRASH_ITERS = 2, 4
SURVIVES_CRASH = {m for m, spec in METHODS.items() if spec.offload != "never"}


def run_engine(tmp: Path, method: str, stages: int, trace: str, iterations: int):
    (tmp / "fault.trace").write_text(trace)
    res = run_job(["--preset", "tiny", "--dtype", "float64", "--lr", "0", "--fixed-data",
                   "--seed", str(SEED), "--pace", "off", "--method", method,
                   "--microbatches", str(stages), "--iterations", str(iterations),
                   "--delegates", "2", "--trace", str(tmp / "fault.trace"),
                   "--p2p-semantics", "nccl", "--timeout", "30", "--p2p-watchdog", "10",
                   "--dump-grads", str(tmp / "grads"), "--out", str(tmp / "log")],
                  nproc=stages, timeout=240)
    return res, read_records(tmp / "log") if (tmp / "log").exists() else []


def check_gradients(grads: Path, stages: int, iterations: range) -> None:
    for it in iterations:
        assert_iteration_matches(grads, it, stages, stages, f"iteration {it}")


def headers(records: list[dict], stage: int = 0) -> dict[int, dict]:
    return {r["iter"]: r for r in records if r["kind"] == "iteration" and r["stage"] == stage}


def check_emulated(log: Path, stages: int) -> None:
    for s in range(stages):
        facts = json.loads((log / f"stage{s}.facts.json").read_text())
        assert facts["p2p_semantics"] == "nccl", s


STAGE_PARAMS = [4, pytest.param(8, id="8")]  # CI runs both (the suite runs slow tests)


@pytest.mark.parametrize("stages", STAGE_PARAMS)
@pytest.mark.parametrize("method", list(METHODS))
def test_slow_link_that_clears_trains_exact_gradients(tmp_path, method: str, stages: int) -> None:
    last = f"{stages - 2}_{stages - 1}"
    res, records = run_engine(tmp_path, method, stages,
                              f"{SLOW_FROM};{last};0.02\n{CLEAR_AT};;0\n", ITERS)
    assert res.returncode == 0, res.stderr[-3000:]
    check_emulated(tmp_path / "log", stages)
    heads = headers(records)
    assert sorted(heads) == list(range(ITERS))
    for it, h in heads.items():
        slow = SLOW_FROM <= it < CLEAR_AT
        assert h["link_delays_ms"] == [0.0] * (stages - 2) + [20.0 if slow else 0.0], it
        # the methods with delegates move p2p there while the link is slow (all-cpu: always)
        assert h["offload"] == (METHODS[method].offload == "always" or
                                (slow and METHODS[method].offload == "on-fault")), it
    check_gradients(tmp_path / "grads", stages, range(ITERS))


@pytest.mark.parametrize("stages", STAGE_PARAMS)
@pytest.mark.parametrize("method", list(METHODS))
def test_nic_crash_under_nccl_rules(tmp_path, method: str, stages: int) -> None:
    res, records = run_engine(tmp_path, method, stages, f"{CRASH_AT};;inf\n", CRASH_ITERS)
    assert "deadlock" not in res.stderr, res.stderr[-3000:]
    if method in SURVIVES_CRASH:
        assert res.returncode == 0, res.stderr[-3000:]
        assert all(h["offload"] for it, h in headers(records).items() if it >= CRASH_AT)
        check_gradients(tmp_path / "grads", stages, range(CRASH_ITERS))
    else:  # ZB and 1F1B fail cleanly: the inline send on the down link says why
        assert res.returncode != 0
        reasons = [line for line in res.stderr.splitlines() if line.startswith("engine: stage")]
        assert any("LinkDownError" in r and "is down" in r for r in reasons), res.stderr[-3000:]
        check_gradients(tmp_path / "grads", stages, range(CRASH_AT))
    check_emulated(tmp_path / "log", stages)


def _shared_layout(tmp_path: Path, env: dict[str, str]):
    return run_job(["--preset", "tiny", "--method", "zb", "--microbatches", "4", "--iterations",
                    "2", "--pace", "off", "--p2p-groups", "shared", "--timeout", "60",
                    "--p2p-watchdog", "3", "--out", str(tmp_path / "log")],
                   nproc=4, timeout=120, env=env)


def test_receive_everything_first_on_one_group_deadlocks_under_nccl_rules(tmp_path) -> None:
    # set through the environment, as pmctl sets it for every stage of a cell
    res = _shared_layout(tmp_path, {P2P_SEMANTICS_ENV: "nccl"})
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.startswith("engine: stage")]
    deadlocks = [line for line in lines if "p2p deadlock under nccl semantics" in line]
    assert deadlocks, res.stderr[-3000:]
    # each names its rank, the peers and the pending receive at the head of the stream, with
    # the sends queued behind it: the cycle NCCL would hang in at iteration 0
    for line in deadlocks:
        assert "waits on rank(s)" in line and "pending: recv " in line and "mb0 from" in line, line
        assert "on the main group" in line and " send queued" in line, line
    assert not any(r["kind"] == "iteration" for r in read_records(tmp_path / "log"))


def test_receive_everything_first_runs_under_native_matching(tmp_path) -> None:
    res = _shared_layout(tmp_path, {P2P_SEMANTICS_ENV: "native"})
    assert res.returncode == 0, res.stderr[-3000:]
