"""NCCL's p2p rules as ``engine.p2p.nccl_rules`` emulates them on gloo, each shown on two real
gloo ranks against gloo's native matching: tags are ignored (issue order matches), a receive
at the head of a stream holds the sends behind it, and a send completes only when its receive
is posted. Plus how ``--p2p-semantics`` gets its value (flag, ``PMCTL_P2P_SEMANTICS``) and
that pmctl forwards that variable to the stages it starts.

This file is also the ranks' entry point: ``main(argv)`` runs one scenario on one rank.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import pytest

from engine.config import P2P_SEMANTICS_ENV, parse_config
from engine.errors import EngineConfigError
from tests.jobs import run_job

WATCHDOG_S = 2.0


SCENARIOS = ("tags", "recv-first", "send-first")


def _scenario(name: str, comm, rank: int, channel) -> dict:
    import torch

    peer = 1 - rank
    if name == "tags":  # rank 0 sends 1.0 (tag 1) then 2.0 (tag 2); rank 1 posts tag 2 first
        if rank == 0:
            sends = [comm.isend(torch.tensor([float(t)]), 1, channel, t, f"send t{t}") for t in (1, 2)]
            for h in sends:
                h.wait()
            return {}
        bufs = {t: torch.zeros(1) for t in (2, 1)}
        handles = [comm.irecv(bufs[t], 0, channel, t, f"recv t{t}") for t in (2, 1)]
        for h in handles:
            h.wait()
        return {"tag2": float(bufs[2][0]), "tag1": float(bufs[1][0])}
    # both ranks post one receive and one send towards each other, in the order named
    buf, out = torch.zeros(1), torch.tensor([float(rank)])
    ops = [("recv", buf), ("send", out)] if name == "recv-first" else [("send", out), ("recv", buf)]
    handles = [comm.irecv(t, peer, channel, 0, f"recv from {peer}") if kind == "recv"
               else comm.isend(t, peer, channel, 0, f"send to {peer}") for kind, t in ops]
    for h in handles:
        h.wait()
    return {"got": float(buf[0])}


def main(argv: list[str]) -> None:
    """One rank: every scenario under semantics ``argv[0]``, each on a fresh group (a
    deadlocked one stays stuck); prints the results."""
    import torch.distributed as dist

    from engine.p2p.nccl_rules import Channel, P2PDeadlockError, make_comm

    dist.init_process_group("gloo")
    rank, results = dist.get_rank(), {}
    for name in SCENARIOS:
        channel = Channel(dist.new_group([0, 1]), f"group {name}")
        try:
            results[name] = _scenario(name, make_comm(argv[0], rank, WATCHDOG_S), rank, channel)
        except P2PDeadlockError as exc:
            results[name] = {"deadlock": str(exc)}
    sys.stdout.write(f"RESULT {rank} {json.dumps(results)}\n")
    sys.stdout.flush()
    os._exit(0)  # a deadlocked stream thread still sits in gloo: leave without joining it


@functools.cache
def _run(semantics: str) -> dict[str, dict[int, dict]]:
    """Scenario -> rank -> result (one job per semantics, shared by the tests)."""
    res = run_job([semantics], nproc=2, timeout=90, module="tests.engine.test_p2p_nccl_rules")
    assert res.returncode == 0, res.stderr[-3000:]
    out: dict[str, dict[int, dict]] = {name: {} for name in SCENARIOS}
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            _, rank, payload = line.split(" ", 2)
            for name, result in json.loads(payload).items():
                out[name][int(rank)] = result
    assert all(sorted(r) == [0, 1] for r in out.values()), res.stdout + res.stderr[-3000:]
    return out


@pytest.mark.slow
def test_tags_match_natively_and_issue_order_under_nccl_rules() -> None:
    assert _run("native")["tags"][1] == {"tag2": 2.0, "tag1": 1.0}
    assert _run("nccl")["tags"][1] == {"tag2": 1.0, "tag1": 2.0}  # the first receive got the first send


@pytest.mark.slow
@pytest.mark.parametrize("order", ["recv-first", "send-first"])
def test_a_head_operation_holds_its_stream_under_nccl_rules(order: str) -> None:
    # natively both orders exchange; under NCCL's rules a receive at the head waits for a
    # send stuck behind the peer's receive, and a send at the head waits for a receive stuck
    # behind the peer's send (rendezvous): both deadlock, and say so
    assert _run("native")[order] == {0: {"got": 1.0}, 1: {"got": 0.0}}
    for rank, result in _run("nccl")[order].items():
        line = result["deadlock"]
        head = f"{order.split('-')[0]} {'to' if order == 'send-first' else 'from'} {1 - rank}"
        assert line.startswith(f"p2p deadlock under nccl semantics: rank {rank} waits on rank(s) {1 - rank}")
        kind = "1 send" if order == "recv-first" else "1 recv"
        assert f"pending: {head} on group {order} (then " in line and kind in line, line


def _unposted_op(comm, what: str):
    """An operation pending on ``comm`` whose stream never runs (the test finishes it)."""
    import torch

    from engine.p2p.nccl_rules import Channel, _Op, _Stream

    op = _Op(False, torch.zeros(1), 1, what, _Stream(comm, Channel(None, "link 0_1 F"), 1))
    comm._pending.append(op)
    return op


def test_watchdog_counts_only_time_blocked_in_a_wait() -> None:
    import threading

    from engine.p2p.nccl_rules import NcclRulesComm, P2PDeadlockError

    now = [0.0]
    comm = NcclRulesComm(0, WATCHDOG_S, clock=lambda: now[0])
    op = _unposted_op(comm, "recv from 1")
    now[0] = 100.0  # the rank computed far longer than the watchdog with the receive pending
    finisher = threading.Timer(0.2, comm.finished, [op])
    finisher.start()
    op.wait()  # the clock stands still while it waits: not stalled, and its data arrives
    finisher.join()
    # a wait that stays blocked past the watchdog is still a deadlock
    ticks = iter(range(200, 300))
    comm.clock = lambda: float(next(ticks))
    with pytest.raises(P2PDeadlockError, match=r"rank 0 waits on rank\(s\) 1, no p2p progress for 2.0 s; "
                       r"pending: recv again from 1 on link 0_1 F"):
        _unposted_op(comm, "recv again from 1").wait()


def _config(monkeypatch, *args: str):
    monkeypatch.setenv("WORLD_SIZE", "4")
    return parse_config(["--preset", "tiny", *args])


def test_p2p_semantics_flag_environment_and_default(monkeypatch) -> None:
    monkeypatch.delenv(P2P_SEMANTICS_ENV, raising=False)
    cfg = _config(monkeypatch)
    assert (cfg.p2p_semantics, cfg.p2p_watchdog_s, cfg.p2p_groups) == ("native", 30.0, "link")
    monkeypatch.setenv(P2P_SEMANTICS_ENV, "nccl")
    assert _config(monkeypatch, "--timeout", "8").p2p_semantics == "nccl"
    assert _config(monkeypatch, "--timeout", "8").p2p_watchdog_s == 4.0
    assert _config(monkeypatch, "--p2p-semantics", "native").p2p_semantics == "native"  # flag wins
    monkeypatch.setenv(P2P_SEMANTICS_ENV, "mpi")
    with pytest.raises(EngineConfigError, match=f"{P2P_SEMANTICS_ENV}='mpi': use one of native, nccl"):
        _config(monkeypatch)
    with pytest.raises(EngineConfigError, match="--p2p-semantics"):
        _config(monkeypatch, "--p2p-semantics", "gloo")
    with pytest.raises(EngineConfigError, match="--p2p-watchdog 0"):
        _config(monkeypatch, "--p2p-semantics", "nccl", "--p2p-watchdog", "0")
    # the watchdog's default is half of --timeout: an infinite one is refused by its own name
    with pytest.raises(EngineConfigError, match="--timeout inf: must be a finite number of seconds > 0"):
        _config(monkeypatch, "--p2p-semantics", "nccl", "--timeout", "inf")


def test_pmctl_forwards_p2p_semantics_to_every_stage(monkeypatch) -> None:
    # local stages inherit pmctl's environment; SSH stages get only their env file, so the
    # variable must be in it
    from pmctl import launchers as L
    from pmctl.inventory import parse_inventory

    inv = parse_inventory(
        {"cluster": {"transport": "ssh", "deploy": "none", "python": "/py", "work_dir": "/w",
                     "launcher": "direct"},
         "hosts": [{"name": n, "address": f"10.0.0.{i + 1}", "gpus": 2} for i, n in enumerate("ab")]},
        Path("inv.toml"))
    rdzv = L.rendezvous(inv, 29500)
    procs = L.launcher_of(inv).processes(inv)
    monkeypatch.delenv(P2P_SEMANTICS_ENV, raising=False)
    assert all(P2P_SEMANTICS_ENV not in L.stage_env(inv, p, rdzv, "/w/r") for p in procs)
    monkeypatch.setenv(P2P_SEMANTICS_ENV, "nccl")
    assert all(L.stage_env(inv, p, rdzv, "/w/r")[P2P_SEMANTICS_ENV] == "nccl" for p in procs)
