"""Launchers: how the hosts start a cell's stage processes. One table, ``LAUNCHERS`` (the
inventory's ``cluster.launcher`` -> a ``Launcher``); adding a launcher is one entry.

A launcher says which processes start where (``processes``), the command line and extra
environment of each, and how to name a failing one. The rendezvous is torchrun's static one
(``engine.rendezvous``): rank = node rank x stages per node + local rank, with host order =
node order, so stage order is host order, then local rank.

- ``fork`` (the local default): ``engine.forkrun`` per node, which imports torch and the
  engine once and forks the node's stages with torchrun's environment and supervision.
- ``torchrun`` (the SSH default): one ``torchrun`` agent per node.
- ``direct``: no agent; every stage is its own process, started by pmctl with the
  environment torchrun would have given it (a host with ``gpus = N`` starts N of them).

Nodes: over SSH every host is a node running its ``gpus = N`` stages (1 without ``gpus``).
On the local cluster every "host" is this machine, so the cluster is one node running all
the stages: one agent starts them all, and ``LOCAL_RANK`` (which picks a CUDA device) is the
stage, as it is for the direct launcher there too.
"""

from __future__ import annotations

import os
import posixpath
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from engine.config import P2P_SEMANTICS_ENV
from engine.rendezvous import Rendezvous
from injector.control import PASSWORD_FILE_ENV
from pmctl.errors import UserError
from pmctl.inventory import Host, Inventory

ENGINE_ENTRY = ("-m", "engine.train")


@dataclass(frozen=True)
class StageProcess:
    """One process a launcher starts: on ``host``, running the global ``stages``."""

    host: Host
    stages: range
    name: str  # the transport's process name on its host: "stage", or "stage<s>" for several
    label: str  # its key in cell.json's exit codes and the stem of its collected streams

    def __str__(self) -> str:
        return self.label


def one_machine(inv: Inventory) -> bool:
    """Whether every host is this machine (the local cluster): then it is one node."""
    return inv.cluster.transport == "local"


def rendezvous(inv: Inventory, master_port: int) -> Rendezvous:
    """The cluster as torchrun's static rendezvous: one node per host (over SSH), or one node
    for all stages (the local cluster)."""
    if one_machine(inv):
        return Rendezvous(1, inv.stages, inv.master.address, master_port)
    return Rendezvous(len(inv.hosts), inv.stages_per_host, inv.master.address, master_port)


def cell_fields(inv: Inventory) -> dict[str, Any]:
    """The spec fields of a cell run on ``inv``: its stages, stages per host (per inventory
    host; on the local cluster the stages nevertheless see one node, see ``rendezvous``),
    device and launcher."""
    return {
        "stages": inv.stages, "stages_per_host": inv.stages_per_host,
        "device": inv.cluster.device, "launcher": inv.cluster.launcher,
    }


def check_cell(inv: Inventory, cell: Any) -> None:
    """Refuses, in one line, a cell whose spec is not what this inventory runs."""
    want = cell_fields(inv)
    wrong = [f"{k} {getattr(cell, k)!r} (the inventory runs {v!r})" for k, v in want.items() if getattr(cell, k) != v]
    if wrong:
        raise UserError(
            f"cell {cell.figure}/{cell.method} does not fit the inventory: {', '.join(wrong)}",
            str(inv.path), "build the cell from this inventory (pmctl.launchers.cell_fields)",
        )


def check_p2p_semantics() -> None:
    """Refuses, in one line, a ``$PMCTL_P2P_SEMANTICS`` the engine would refuse: it goes to
    every stage of every cell (``stage_env``), so checked once here, every cell fails there."""
    from engine.config import _p2p_semantics  # the engine's own reading of it (no torch)
    from engine.errors import EngineConfigError

    try:
        _p2p_semantics(None)
    except EngineConfigError as exc:
        raise UserError(str(exc), "pmctl run") from None  # it says how to fix it


def describe(launcher: str, proc: StageProcess) -> str:
    """How a process is named in a failure: ``stage 2 on h1`` or ``fork (stages 2-3) on h1``."""
    s = proc.stages
    if len(s) == 1:
        return f"stage {s[0]} on {proc.host.name}"
    return f"{launcher} (stages {s[0]}-{s[-1]}) on {proc.host.name}"


class Launcher(Protocol):
    """One way of starting the stages."""

    name: str

    def processes(self, inv: Inventory) -> list[StageProcess]:
        """What starts where, in stage order."""
        ...

    def command(self, proc: StageProcess, rdzv: Rendezvous, engine_argv: Sequence[str]) -> list[str]:
        """The argv that starts ``proc`` (``engine_argv``: the entry and its options)."""
        ...

    def env(self, proc: StageProcess, rdzv: Rendezvous) -> dict[str, str]:
        """Its own environment, beyond what every stage gets."""
        ...


@dataclass(frozen=True)
class AgentLauncher:
    """One agent per node that starts the node's stages; takes torchrun's static-rendezvous
    options (``torch.distributed.run`` and ``engine.forkrun`` both do)."""

    name: str
    module: str

    def processes(self, inv: Inventory) -> list[StageProcess]:
        if one_machine(inv):
            return [StageProcess(inv.master, range(inv.stages), "stage", inv.master.name)]
        return [StageProcess(h, h.stage_range, "stage", h.name) for h in inv.hosts]

    def command(self, proc: StageProcess, rdzv: Rendezvous, engine_argv: Sequence[str]) -> list[str]:
        node, _local = rdzv.place(proc.stages[0])
        return [
            proc.host.python, "-m", self.module,
            "--nnodes", str(rdzv.nnodes), "--node-rank", str(node),
            "--nproc-per-node", str(rdzv.nproc_per_node),
            "--master-addr", rdzv.master_addr, "--master-port", str(rdzv.master_port),
            *engine_argv,
        ]

    def env(self, proc: StageProcess, rdzv: Rendezvous) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class DirectLauncher:
    """Every stage its own process, with torchrun's environment and no agent: a host with
    ``gpus = N`` starts N processes (``stage<s>``; ``stage`` when it runs one)."""

    name: str = "direct"

    def processes(self, inv: Inventory) -> list[StageProcess]:
        out = []
        for h in inv.hosts:
            for s in h.stage_range:
                one = h.num_stages == 1
                out.append(StageProcess(h, range(s, s + 1), "stage" if one else f"stage{s}",
                                        h.name if one else f"{h.name}.stage{s}"))
        return out

    def command(self, proc: StageProcess, rdzv: Rendezvous, engine_argv: Sequence[str]) -> list[str]:
        return [proc.host.python, *engine_argv]

    def env(self, proc: StageProcess, rdzv: Rendezvous) -> dict[str, str]:
        return rdzv.worker_env(*rdzv.place(proc.stages[0]))


LAUNCHERS: dict[str, Launcher] = {
    "fork": AgentLauncher("fork", "engine.forkrun"),
    "torchrun": AgentLauncher("torchrun", "torch.distributed.run"),
    "direct": DirectLauncher(),
}


def launcher_of(inv: Inventory) -> Launcher:
    return LAUNCHERS[inv.cluster.launcher]


def engine_argv(cell: Any, run_dir: str, control_url: str, run_id: str,
                entry: Sequence[str] = ENGINE_ENTRY) -> list[str]:
    """The engine's entry and options: the cell's spec flags, then the run's own (no secrets:
    those come through the environment file). A trace cell's text is ``<run_dir>/trace.txt``."""
    argv = [*entry, *cell.to_argv(), "--out", f"{run_dir}/out", "--control", control_url, "--run-id", run_id]
    if cell.trace_text:
        argv += ["--trace", f"{run_dir}/trace.txt"]
    return argv


def resolve_on_host(path: str, login_dir: str) -> str:
    """``path`` as the host finds it from any folder: a relative path with a ``/`` (the venv
    python of a relative work dir) is relative to ``login_dir``, the folder a host's commands
    start in (the login home over ssh, the cwd locally); a bare name is looked up on PATH."""
    if path.startswith("/") or "/" not in path:
        return path
    return posixpath.join(login_dir, path)


def stage_command(inv: Inventory, proc: StageProcess, rdzv: Rendezvous, argv: Sequence[str], login_dir: str) -> str:
    """The shell command line that starts ``proc``. It runs in the run dir, so the host's
    python is made absolute first (``resolve_on_host``: relative paths are to ``login_dir``)."""
    host = replace(proc.host, python=resolve_on_host(proc.host.python, login_dir))
    return shlex.join(launcher_of(inv).command(replace(proc, host=host), rdzv, argv))


def stage_env(inv: Inventory, proc: StageProcess, rdzv: Rendezvous, run_dir: str) -> dict[str, str]:
    """Environment of a stage process: where the password file is, which NIC gloo/NCCL use,
    one compute thread per CPU stage, and the launcher's own (direct: torchrun's)."""
    env = {PASSWORD_FILE_ENV: f"{run_dir}/password"}
    if proc.host.interface:
        env["GLOO_SOCKET_IFNAME"] = proc.host.interface
        env["NCCL_SOCKET_IFNAME"] = proc.host.interface
    if inv.cluster.device == "cpu":
        # Several stages may share a machine's cores: one compute thread each.
        env["OMP_NUM_THREADS"] = "1"
    if os.environ.get(P2P_SEMANTICS_ENV):  # an engine default for the whole cell; SSH stages
        env[P2P_SEMANTICS_ENV] = os.environ[P2P_SEMANTICS_ENV]  # do not inherit ours
    env.update(launcher_of(inv).env(proc, rdzv))
    return env


__all__ = [
    "ENGINE_ENTRY", "LAUNCHERS", "AgentLauncher", "DirectLauncher", "Launcher", "StageProcess",
    "cell_fields", "check_cell", "check_p2p_semantics", "describe", "engine_argv", "launcher_of", "one_machine",
    "resolve_on_host", "rendezvous", "stage_command", "stage_env",
]
