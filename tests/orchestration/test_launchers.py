"""The rendezvous environment (engine.rendezvous, shared by engine.forkrun and the direct
launcher) and the launcher table: which processes start where, with which command line and
environment, for a 2-host x 2-stage SSH cluster and for the local cluster. No processes run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from engine import forkrun
from engine.cellspec import LAUNCHERS as SPEC_LAUNCHERS
from engine.cellspec import CellSpec
from engine.rendezvous import ENV_KEYS, Rendezvous
from injector.control import PASSWORD_FILE_ENV
from pmctl import launchers as L
from pmctl.collect import missing_op_logs
from pmctl.errors import UserError
from pmctl.inventory import _LAUNCHERS, Inventory, parse_inventory

RUN_DIR = "/w/runs/r1"
ENGINE = ["-m", "engine.train"]


@pytest.mark.parametrize(("nnodes", "nproc"), [(1, 1), (1, 4), (2, 2), (3, 2), (4, 1)])
def test_ranks_are_node_major_then_local_rank(nnodes: int, nproc: int) -> None:
    rdzv = Rendezvous(nnodes, nproc, "10.0.0.1", 29500)
    seen = []
    for node in range(nnodes):
        for local in range(nproc):
            env = rdzv.worker_env(node, local)
            assert tuple(env) == ENV_KEYS
            rank = node * nproc + local
            assert env == {
                "RANK": str(rank), "LOCAL_RANK": str(local), "WORLD_SIZE": str(nnodes * nproc),
                "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": str(node), "GROUP_WORLD_SIZE": str(nnodes),
                "ROLE_RANK": str(rank), "ROLE_WORLD_SIZE": str(nnodes * nproc),
                "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500",
            }
            assert rdzv.place(rank) == (node, local)
            seen.append(rank)
    assert seen == list(range(rdzv.world_size))


def test_rendezvous_refuses_ranks_outside_it() -> None:
    rdzv = Rendezvous(2, 2, "a", 1)
    for bad in ((2, 0), (0, 2), (-1, 0)):
        with pytest.raises(ValueError, match="outside"):
            rdzv.worker_env(*bad)
    with pytest.raises(ValueError, match=r"rank 4 is outside 0\.\.3"):
        rdzv.place(4)
    with pytest.raises(ValueError, match="nproc-per-node"):
        Rendezvous(1, 0, "a", 1)


def test_forkrun_gives_the_same_environment() -> None:
    args = forkrun.parse_args(["--nnodes", "3", "--node-rank", "2", "--nproc-per-node", "2",
                               "--master-addr", "h0", "--master-port", "7", "x.py"])
    assert forkrun.rendezvous(args) == Rendezvous(3, 2, "h0", 7)


def _ssh(launcher: str, gpus: int = 2) -> Inventory:
    hosts = [{"name": n, "address": a, "gpus": gpus} for n, a in (("a", "10.0.0.1"), ("b", "10.0.0.2"))]
    return parse_inventory(
        {"cluster": {"transport": "ssh", "deploy": "none", "python": "/py", "work_dir": "/w",
                     "interface": "eth0", "launcher": launcher}, "hosts": hosts},
        Path("inv.toml"),
    )


def _local(launcher: str) -> Inventory:
    return parse_inventory(
        {"cluster": {"transport": "local", "stages": 4, "python": "/py", "launcher": launcher}},
        Path("local.toml"),
    )


def _cell(inv: Inventory, **kw: object) -> CellSpec:
    base = CellSpec(figure="t", method="zb", links=((1, 2),), delay_s=0.06, preset="tiny", iterations=3, fault_at=1)
    return replace(base, **{**L.cell_fields(inv), **kw})


def _argv(inv: Inventory, cell: CellSpec) -> list[str]:
    return L.engine_argv(cell, RUN_DIR, "redis://10.0.0.1:6379", "r1", tuple(ENGINE))


def test_the_table_has_every_launcher_the_inventory_and_spec_accept() -> None:
    assert set(L.LAUNCHERS) == set(_LAUNCHERS) == set(SPEC_LAUNCHERS)
    assert all(launcher.name == name for name, launcher in L.LAUNCHERS.items())


@pytest.mark.parametrize(("name", "module"), [("torchrun", "torch.distributed.run"), ("fork", "engine.forkrun")])
def test_agent_launchers_start_one_agent_per_host_with_its_node_rank(name: str, module: str) -> None:
    inv = _ssh(name)
    assert [h.stage for h in inv.hosts] == [0, 2] and inv.stages == 4
    cell = _cell(inv)
    assert (cell.stages, cell.stages_per_host, cell.launcher) == (4, 2, name)
    rdzv = L.rendezvous(inv, 29500)
    procs = L.launcher_of(inv).processes(inv)
    assert [(p.host.name, list(p.stages), p.name, p.label) for p in procs] == [
        ("a", [0, 1], "stage", "a"), ("b", [2, 3], "stage", "b"),
    ]
    argv = _argv(inv, cell)
    assert argv[:2] == ENGINE and argv[2:-6] == cell.to_argv()
    assert argv[-6:] == ["--out", f"{RUN_DIR}/out", "--control", "redis://10.0.0.1:6379", "--run-id", "r1"]
    for node, proc in enumerate(procs):
        assert L.launcher_of(inv).command(proc, rdzv, argv) == [
            "/py", "-m", module, "--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "2",
            "--master-addr", "10.0.0.1", "--master-port", "29500", *argv,
        ]
        env = L.stage_env(inv, proc, rdzv, RUN_DIR)
        # The agent sets the rendezvous environment itself.
        assert env == {PASSWORD_FILE_ENV: f"{RUN_DIR}/password", "GLOO_SOCKET_IFNAME": "eth0",
                       "NCCL_SOCKET_IFNAME": "eth0", "OMP_NUM_THREADS": "1"}
    assert L.describe(name, procs[1]) == f"{name} (stages 2-3) on b"
    assert L.stage_command(inv, procs[1], rdzv, ["-m", "engine.train", "--trace-hash", ""], "/home/u").endswith(
        "--master-port 29500 -m engine.train --trace-hash ''")


def test_direct_starts_one_process_per_stage_with_torchruns_environment() -> None:
    inv = _ssh("direct")
    rdzv = L.rendezvous(inv, 29500)
    procs = L.launcher_of(inv).processes(inv)
    assert [(p.host.name, list(p.stages), p.name, p.label) for p in procs] == [
        ("a", [0], "stage0", "a.stage0"), ("a", [1], "stage1", "a.stage1"),
        ("b", [2], "stage2", "b.stage2"), ("b", [3], "stage3", "b.stage3"),
    ]
    argv = _argv(inv, _cell(inv))
    for s, proc in enumerate(procs):
        assert L.launcher_of(inv).command(proc, rdzv, argv) == ["/py", *argv]
        env = L.stage_env(inv, proc, rdzv, RUN_DIR)
        assert {k: env[k] for k in ENV_KEYS} == rdzv.worker_env(s // 2, s % 2)
        assert (env["RANK"], env["LOCAL_RANK"], env["GROUP_RANK"], env["LOCAL_WORLD_SIZE"]) == (
            str(s), str(s % 2), str(s // 2), "2")
        assert env["GLOO_SOCKET_IFNAME"] == "eth0" and env["OMP_NUM_THREADS"] == "1"
        assert L.describe("direct", proc) == f"stage {s} on {'ab'[s // 2]}"
    # One stage per host: the process keeps the plain name, as before gpus = N.
    one = _ssh("direct", gpus=0)
    assert [(p.name, p.label) for p in L.launcher_of(one).processes(one)] == [("stage", "a"), ("stage", "b")]
    assert L.rendezvous(one, 1).nproc_per_node == 1


@pytest.mark.parametrize("name", ["fork", "torchrun"])
def test_the_local_cluster_is_one_node_started_by_one_agent(name: str) -> None:
    inv = _local(name)
    rdzv = L.rendezvous(inv, 4000)
    (proc,) = L.launcher_of(inv).processes(inv)
    assert (proc.host.name, list(proc.stages), proc.label) == ("stage0", [0, 1, 2, 3], "stage0")
    cmd = L.launcher_of(inv).command(proc, rdzv, ENGINE)
    assert cmd[3:11] == ["--nnodes", "1", "--node-rank", "0", "--nproc-per-node", "4", "--master-addr", "127.0.0.1"]
    assert L.cell_fields(inv) == {"stages": 4, "stages_per_host": 1, "device": "cpu", "launcher": name}
    assert L.rendezvous(inv, 0).nproc_per_node == 4  # LOCAL_WORLD_SIZE: all stages on this machine


def test_direct_on_the_local_cluster_numbers_local_ranks_by_stage() -> None:
    inv = _local("direct")
    rdzv = L.rendezvous(inv, 4000)
    procs = L.launcher_of(inv).processes(inv)
    assert [(p.host.name, p.label) for p in procs] == [(f"stage{s}", f"stage{s}") for s in range(4)]
    # One machine: LOCAL_RANK (which picks the CUDA device) is the stage.
    assert [L.stage_env(inv, p, rdzv, RUN_DIR)["LOCAL_RANK"] for p in procs] == ["0", "1", "2", "3"]


def test_only_a_trace_cell_gets_a_trace_file() -> None:
    inv = _ssh("torchrun")
    assert "--trace" not in _argv(inv, _cell(inv))
    traced = _cell(inv, links=(), delay_s=0.0, trace="abc123", trace_text="1;1_2;0.06\n")
    assert _argv(inv, traced)[-2:] == ["--trace", f"{RUN_DIR}/trace.txt"]


def test_a_cell_for_another_shape_is_refused_in_one_line() -> None:
    inv = _ssh("fork")
    L.check_cell(inv, _cell(inv))
    with pytest.raises(UserError) as err:
        L.check_cell(inv, _cell(inv, stages_per_host=1, launcher="torchrun"))
    line = err.value.line()
    assert "stages_per_host 1 (the inventory runs 2)" in line and "launcher 'torchrun'" in line
    assert "\n" not in line


def test_a_missing_op_log_names_the_stage_and_its_host(tmp_path: Path) -> None:
    inv = _ssh("torchrun")
    for s in (0, 1, 3):
        (tmp_path / f"stage{s}.jsonl").write_text("")
    assert missing_op_logs(inv, tmp_path) == "no op log from stage 2 (b)"
    (tmp_path / "stage2.jsonl").write_text("")
    assert missing_op_logs(inv, tmp_path) == ""
