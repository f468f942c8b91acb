"""1F1B's inline p2p paired as Megatron-LM pairs it (``--p2p-pairing megatron``,
``engine.p2p.batched``): the plan is Megatron's call sequence; under NCCL's rules (emulated on
gloo) it completes and trains exact gradients through a slow link; and the semantic shows in
the op log: a receive paired with a delayed send is posted only after the delay, and a send
completes only once its peer posted the receive paired with the peer's own delayed send."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import parse_config
from engine.errors import EngineConfigError
from engine.opkind import OpKind
from engine.oplog import read_records
from engine.p2p.batched import Exchange, Transfer, megatron_exchanges
from engine.planner.generators import one_f_one_b
from engine.planner.ir import Op
from tests.engine.test_p2p_nccl_matrix import check_emulated, check_gradients
from tests.jobs import run_job

F, B = OpKind.F, OpKind.B


def test_plan_is_megatrons_call_sequence() -> None:
    # stage 1 of 4, 5 micro-batches (2 warm-up forwards), as forward_backward_pipelining_
    # without_interleaving calls p2p: send_forward x2 alone, then send_forward_recv_backward /
    # send_backward_recv_forward, the last steady backward's send_backward alone, cool-down alone
    ops = one_f_one_b(4, 5).stages[1]
    assert [str(o) for o in ops] == ["F0", "F1", "F2", "BW0", "F3", "BW1", "F4", "BW2", "BW3", "BW4"]
    up, down = 2, 0
    assert megatron_exchanges(ops, 1, 4) == {
        0: Exchange(Transfer(F, up, 0), None),
        1: Exchange(Transfer(F, up, 1), None),
        2: Exchange(Transfer(F, up, 2), Transfer(B, up, 0)),
        3: Exchange(Transfer(B, down, 0), Transfer(F, down, 3)),
        4: Exchange(Transfer(F, up, 3), Transfer(B, up, 1)),
        5: Exchange(Transfer(B, down, 1), Transfer(F, down, 4)),
        6: Exchange(Transfer(F, up, 4), Transfer(B, up, 2)),
        7: Exchange(Transfer(B, down, 2), None),
        8: Exchange(Transfer(B, down, 3), None),
        9: Exchange(Transfer(B, down, 4), None),
    }


def test_first_and_last_stage_pair_only_with_their_one_neighbour() -> None:
    sched = one_f_one_b(4, 4)
    first = megatron_exchanges(sched.stages[0], 0, 4)  # F3 BW0 F... : no gradient leaves stage 0
    assert all(ex.send.direction is F and ex.send.peer == 1 for ex in first.values())
    assert first[3] == Exchange(Transfer(F, 1, 3), Transfer(B, 1, 0))
    last = megatron_exchanges(sched.stages[3], 3, 4)  # F0 BW0 F1 BW1 ...: grad out, act in
    assert last == {1: Exchange(Transfer(B, 2, 0), Transfer(F, 2, 1)),
                    3: Exchange(Transfer(B, 2, 1), Transfer(F, 2, 2)),
                    5: Exchange(Transfer(B, 2, 2), Transfer(F, 2, 3)),
                    7: Exchange(Transfer(B, 2, 3), None)}


def test_only_1f1b_takes_megatron_pairing(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert parse_config(["--method", "1F1B", "--p2p-pairing", "megatron"]).p2p_pairing == "megatron"
    with pytest.raises(EngineConfigError, match=r"only 1f1b pairs .*\(method zb\)"):
        parse_config(["--method", "zb", "--p2p-pairing", "megatron"])


ITERS, SLOW_FROM, DELAY_S = 3, 1, 0.05  # the last link slow from iteration SLOW_FROM


def _run(tmp: Path, pairing: str, stages: int):
    """tiny, float64, lr 0, as many micro-batches as stages (``check_gradients``' reference)."""
    (tmp / "fault.trace").write_text(f"{SLOW_FROM};{stages - 2}_{stages - 1};{DELAY_S}\n")
    res = run_job(["--preset", "tiny", "--dtype", "float64", "--lr", "0", "--fixed-data",
                   "--seed", "11", "--pace", "off", "--method", "1f1b", "--microbatches",
                   str(stages), "--iterations", str(ITERS), "--trace", str(tmp / "fault.trace"),
                   "--p2p-semantics", "nccl", "--p2p-pairing", pairing, "--timeout", "30",
                   "--p2p-watchdog", "10", "--dump-grads", str(tmp / "grads"),
                   "--out", str(tmp / "log")], nproc=stages, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    check_gradients(tmp / "grads", stages, range(ITERS))
    return [r for r in read_records(tmp / "log") if r["kind"] == "op" and r["iter"] >= SLOW_FROM]


def _ops(records: list[dict], stage: int, op: str) -> dict[tuple[int, int], dict]:
    return {(r["iter"], r["mb"]): r for r in records if r["stage"] == stage and r["op"] == op}


def _slow_link_pairs(stages: int) -> list[tuple[Op, Transfer]]:
    """On the slow link's lower stage: each F whose activation goes out with a gradient's
    receive, and that receive."""
    low = stages - 2
    ops = one_f_one_b(stages, stages).stages[low]
    return [(ops[i], ex.recv) for i, ex in megatron_exchanges(ops, low, stages).items()
            if ex.recv is not None and ex.send.peer == low + 1]


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("stages", [4, 8])
def test_megatron_pairing_under_nccl_rules_exact_gradients_and_held_receives(tmp_path, stages) -> None:
    records = _run(tmp_path, "megatron", stages)
    check_emulated(tmp_path / "log", stages)
    facts = json.loads((tmp_path / "log" / "stage0.facts.json").read_text())
    assert facts["p2p_pairing"] == "megatron"
    delay_ms, low, high = DELAY_S * 1000.0, stages - 2, stages - 1
    send_f, recv_b = _ops(records, low, "SEND_F"), _ops(records, low, "RECV_B")
    send_b_high, recv_f_high = _ops(records, high, "SEND_B"), _ops(records, high, "RECV_F")
    pairs = _slow_link_pairs(stages)
    assert len(pairs) == stages - 1  # all but the lower stage's one warm-up forward
    for it in range(SLOW_FROM, ITERS):
        for f, grad in pairs:
            send, recv = send_f[(it, f.mb)], recv_b[(it, grad.mb)]
            assert send["delay_ms"] == delay_ms
            # the gradient's receive is posted with the delayed send, so it completes no
            # earlier than the send's delay ends; the exchange ends both together
            assert recv["start_ms"] >= send["start_ms"] + delay_ms - 1.0, (it, f)
            assert recv["end_ms"] >= send["start_ms"] + delay_ms - 1.0, (it, f)
            assert send["end_ms"] == recv["end_ms"], (it, f)
            # NCCL's rendezvous: the activation's send completes only once the next stage
            # posted its receive, which it pairs with its own (delayed) gradient send
            peer_send = send_b_high[(it, grad.mb)]
            assert recv_f_high[(it, f.mb)]["start_ms"] >= peer_send["start_ms"] + delay_ms - 1.0
            assert send["end_ms"] >= peer_send["start_ms"] + delay_ms - 1.0, (it, f)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_early_pairing_posts_sends_without_waiting(tmp_path) -> None:
    # today's inline path (the option): receives posted at the iteration start, sends waited
    # on at the iteration's end, so a send's record ends before the next op's receive starts
    records = _run(tmp_path, "early", 4)
    send_f, recv_b = _ops(records, 2, "SEND_F"), _ops(records, 2, "RECV_B")
    for it in range(SLOW_FROM, ITERS):
        for f, grad in _slow_link_pairs(4):
            assert send_f[(it, f.mb)]["end_ms"] <= recv_b[(it, grad.mb)]["start_ms"], (it, f)
