"""The host inventory (``inventory.toml``): typed, validated once before anything touches a host.

Layout (ARCHITECTURE.md): a ``[cluster]`` table and ``[[hosts]]`` entries, host order = stage
order (host i runs pipeline stage i). A local cluster may leave ``[[hosts]]`` out and give
``stages = N`` instead: that expands to N hosts ``stage0..stageN-1`` on 127.0.0.1.

``deploy = "none"`` says the project is already importable by ``python`` on every host (the
embedded local cluster, and test hosts that share this machine's filesystem): ``pmctl setup``
then only checks the hosts instead of pushing a wheel and building a venv.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pmctl.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ENV_VAR = "PMCTL_INVENTORY"
DEFAULT_NAME = "inventory.toml"
BUILTIN_NAME = "<built-in local cluster>"
# The embedded local cluster (the same as the shipped inventory.toml), used when no inventory
# file is found: an installed wheel carries no inventory.toml, and it must still work.
BUILTIN_INVENTORY: dict[str, Any] = {
    "cluster": {"name": "local", "transport": "local", "device": "cpu", "stages": 4},
}

_TRANSPORTS = ("local", "ssh")
_DEVICES = ("cpu", "cuda")
_DEPLOYS = ("wheel", "none")
_LAUNCHERS = ("fork", "torchrun", "direct")
_CLUSTER_KEYS = {
    "name", "transport", "device", "work_dir", "python", "deploy", "stages",
    "master_port", "redis_port", "connect_timeout", "known_hosts", "user", "identity_file",
    "interface", "launcher", "base_python", "preset", "microbatches",
}
_HOST_KEYS = {
    "name", "address", "user", "port", "identity_file", "gpus", "interface", "work_dir",
    "python", "base_python",
}


@dataclass(frozen=True)
class Host:
    """One host, running ``num_stages`` consecutive pipeline stages from ``stage`` (one per
    GPU with ``gpus = N``; one on a host without ``gpus``); every field already resolved from
    the cluster defaults."""

    name: str
    address: str
    stage: int  # the first stage it runs; its node rank is its position in the inventory
    work_dir: str  # per host; relative paths: to the cwd (local) or the login home (ssh)
    python: str  # interpreter that runs the engine on this host
    user: str | None = None
    port: int = 22
    identity_file: str | None = None
    gpus: int = 0
    interface: str | None = None  # network interface for gloo/NCCL (GLOO_SOCKET_IFNAME)
    # deploy = "wheel": the interpreter that makes the host's venv, whose packages (torch) the
    # venv reuses
    base_python: str = "python3"
    num_stages: int = 1

    @property
    def stage_range(self) -> range:
        """The global stages this host runs (stage order = host order, then local rank)."""
        return range(self.stage, self.stage + self.num_stages)


@dataclass(frozen=True)
class Cluster:
    """The ``[cluster]`` table."""

    name: str
    transport: str  # "local" | "ssh"
    device: str  # "cpu" | "cuda"
    deploy: str  # "wheel" | "none"
    work_dir: str
    master_port: int  # 0 = pick a free port on the master per cell
    redis_port: int  # 0 = pick a free port on the master per cell
    connect_timeout: float
    known_hosts: str  # ssh only: host keys are checked against this file
    # How a host starts its stage processes (the default: "fork" locally, "torchrun" over ssh).
    # "torchrun": one torchrun agent per host (static node rank); "fork": engine.forkrun, which
    # imports torch once and forks the stages with torchrun's environment; "direct": the stage
    # process itself with torchrun's environment (RANK, WORLD_SIZE, MASTER_*), no agent.
    launcher: str = "torchrun"
    preset: str | None = None  # the cells' model preset (None: the figures' default)
    microbatches: int | None = None  # micro-batches per iteration (None: the preset's)


@dataclass(frozen=True)
class Inventory:
    """A validated inventory; ``hosts[0]`` is the master (rendezvous + Redis)."""

    path: Path
    cluster: Cluster
    hosts: tuple[Host, ...] = field(default=())

    @property
    def master(self) -> Host:
        return self.hosts[0]

    @property
    def stages(self) -> int:
        """Pipeline stages: the sum over hosts."""
        return sum(h.num_stages for h in self.hosts)

    @property
    def stages_per_host(self) -> int:
        """Stages on each host (the same on every host: validated)."""
        return self.hosts[0].num_stages

    def with_stages(self, stages: int) -> Inventory:
        """The same cluster with ``stages`` stages (``--stages``): a local cluster grows or
        shrinks its hosts (keeping the stages per host); an SSH one must already match."""
        if stages == self.stages:
            return self
        per = self.stages_per_host
        if self.cluster.transport != "local":
            raise UserError(
                f"--stages {stages}: the inventory's hosts run {self.stages} stages", str(self.path),
                "change the hosts (or their gpus) in the inventory, or drop --stages",
            )
        if stages < 2 or stages % per:
            raise UserError(
                f"--stages {stages}: need a multiple of {per} (stages per host), at least 2",
                str(self.path), f"choose e.g. {max(2, per) * 2}",
            )
        # Each new host gets its own work dir, as the hosts of `stages = N` have.
        hosts = tuple(
            replace(self.hosts[0], name=f"stage{i * per}", stage=i * per,
                    work_dir=f"{self.cluster.work_dir}/stage{i * per}")
            for i in range(stages // per)
        )
        return replace(self, hosts=hosts)

    def only(self, names: list[str]) -> Inventory:
        """The same inventory restricted to some hosts (for ``setup`` of a subset)."""
        return replace(self, hosts=tuple(h for h in self.hosts if h.name in names))


def default_inventory_path(explicit: str | Path | None = None) -> Path | None:
    """``--inventory`` if given, else ``$PMCTL_INVENTORY``, else ``./inventory.toml``, else
    None: the built-in local cluster (``BUILTIN_INVENTORY``)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    local = Path.cwd() / DEFAULT_NAME
    return local if local.exists() else None


def load_inventory(path: str | Path | None = None) -> Inventory:
    """Reads and validates an inventory (without a file: the built-in local cluster); any
    problem is one ``UserError`` naming the field."""
    p = default_inventory_path(path)
    if p is None:
        return parse_inventory(BUILTIN_INVENTORY, Path(BUILTIN_NAME))
    if not p.is_file():
        raise UserError(
            "inventory file not found", str(p),
            f"pass an existing file to --inventory or {ENV_VAR}; with neither (and no "
            f"./{DEFAULT_NAME}) pmctl uses its built-in local cluster",
        )
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"not valid TOML: {exc}", str(p), "fix the syntax") from exc
    return parse_inventory(data, p)


def parse_inventory(data: dict[str, Any], path: Path) -> Inventory:
    """Validates the parsed TOML of ``path`` (pure: only reads identity and known_hosts)."""
    v = _Validator(path)
    v.unknown(data, {"cluster", "hosts"}, "")
    raw_cluster = data.get("cluster")
    if not isinstance(raw_cluster, dict):
        raise v.error("cluster", "missing [cluster] table", 'add [cluster] with transport = "local"')
    v.unknown(raw_cluster, _CLUSTER_KEYS, "cluster")
    transport = v.choice(raw_cluster, "cluster", "transport", _TRANSPORTS, "local")
    device = v.choice(raw_cluster, "cluster", "device", _DEVICES, "cpu")
    deploy = v.choice(
        raw_cluster, "cluster", "deploy", _DEPLOYS, "none" if transport == "local" else "wheel"
    )
    work_dir = v.string(raw_cluster, "cluster", "work_dir", ".pmctl/work")
    if work_dir.startswith("~"):
        raise v.error("cluster.work_dir", f"{work_dir!r}: ~ is not expanded on the hosts",
                      "give a path relative to the login home (e.g. pmctl) or an absolute one")
    # The embedded local cluster runs the interpreter pmctl itself runs in.
    default_python = sys.executable if deploy == "none" and transport == "local" else None
    cluster_python = v.string(raw_cluster, "cluster", "python", default_python)
    if deploy == "none" and cluster_python is None and not _all_hosts_have(data.get("hosts"), "python"):
        raise v.error(
            "cluster.python", 'deploy = "none" but no python given',
            "set python to an interpreter that imports the project on the hosts, or deploy = \"wheel\"",
        )
    known_hosts = v.string(raw_cluster, "cluster", "known_hosts", "~/.ssh/known_hosts")
    cluster = Cluster(
        name=v.string(raw_cluster, "cluster", "name", path.stem),
        transport=transport,
        device=device,
        deploy=deploy,
        work_dir=work_dir,
        master_port=v.port(raw_cluster, "cluster", "master_port", 0, allow_zero=True),
        redis_port=v.port(raw_cluster, "cluster", "redis_port", 0, allow_zero=True),
        connect_timeout=v.number(raw_cluster, "cluster", "connect_timeout", 10.0),
        known_hosts=str(Path(known_hosts).expanduser()),
        launcher=v.choice(
            raw_cluster, "cluster", "launcher", _LAUNCHERS, "fork" if transport == "local" else "torchrun"
        ),
        preset=v.preset(raw_cluster),
        microbatches=v.count(raw_cluster, "cluster", "microbatches"),
    )
    if cluster.master_port and cluster.master_port == cluster.redis_port:
        raise v.error("cluster.redis_port", f"{cluster.redis_port} is master_port too",
                      "give the control plane and the rendezvous different ports (or 0: pick free ones)")
    stages = raw_cluster.get("stages")
    if stages is not None and (not isinstance(stages, int) or isinstance(stages, bool) or stages < 2):
        raise v.error("cluster.stages", f"must be an integer >= 2, got {stages!r}", "set stages = 4")
    raw_hosts = data.get("hosts")
    if raw_hosts is None:
        if stages is None or transport != "local":
            raise v.error(
                "hosts", "no [[hosts]] entries",
                "add one [[hosts]] per stage (a local cluster may set cluster.stages instead)",
            )
        raw_hosts = [{"name": f"stage{i}", "address": "127.0.0.1"} for i in range(stages)]
    if not isinstance(raw_hosts, list) or not all(isinstance(h, dict) for h in raw_hosts):
        raise v.error("hosts", "must be an array of tables", "write each host as [[hosts]]")
    if not raw_hosts:
        raise v.error("hosts", "no hosts: a pipeline needs at least 2 stages", "add hosts")
    defaults = {
        "user": raw_cluster.get("user"),
        "identity_file": raw_cluster.get("identity_file"),
        "interface": raw_cluster.get("interface"),
        "python": cluster_python,
        "base_python": v.string(raw_cluster, "cluster", "base_python", "python3"),
    }
    hosts: list[Host] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_hosts):
        hosts.append(v.host(raw, i, cluster, defaults, seen, sum(h.num_stages for h in hosts)))
    odd = next((h for h in hosts if h.num_stages != hosts[0].num_stages), None)
    if odd is not None:
        # torchrun's static rendezvous numbers ranks node_rank x nproc + local rank
        raise v.error(
            f"hosts[{hosts.index(odd)}].gpus",
            f"{odd.num_stages} stages on {odd.name} but {hosts[0].num_stages} on {hosts[0].name}",
            "give every host the same number of gpus",
        )
    total = sum(h.num_stages for h in hosts)
    if stages is not None and total != stages:
        raise v.error(
            "hosts", f"{len(hosts)} hosts run {total} stages but cluster.stages = {stages}",
            "list one [[hosts]] entry per stage (or per gpus = N stages)",
        )
    if total < 2:
        raise v.error("hosts", "1 stage: a pipeline needs at least 2", "add hosts or gpus")
    return Inventory(path=path, cluster=cluster, hosts=tuple(hosts))


def _all_hosts_have(raw_hosts: Any, key: str) -> bool:
    return isinstance(raw_hosts, list) and bool(raw_hosts) and all(
        isinstance(h, dict) and key in h for h in raw_hosts
    )


class _Validator:
    """Field checks that all raise the same shaped one-line error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, field_name: str, what: str, hint: str) -> UserError:
        return UserError(what, f"{self.path}: {field_name}", hint)

    def unknown(self, table: dict[str, Any], allowed: set[str], where: str) -> None:
        extra = sorted(set(table) - allowed)
        if extra:
            name = f"{where}.{extra[0]}" if where else extra[0]
            raise self.error(
                name, "unknown key", f"remove it; allowed: {', '.join(sorted(allowed))}"
            )

    def string(self, t: dict[str, Any], where: str, key: str, default: str | None) -> Any:
        val = t.get(key, default)
        if val is not None and (not isinstance(val, str) or not val):
            raise self.error(f"{where}.{key}", f"must be a non-empty string, got {val!r}", "quote it")
        return val

    def interpreter(self, t: dict[str, Any], where: str, key: str, default: str | None) -> Any:
        """A python to run on a host: it goes through a quoted command line, so no ``~``."""
        val = self.string(t, where, key, default)
        if isinstance(val, str) and val.startswith("~"):
            raise self.error(f"{where}.{key}", f"{val!r}: ~ is not expanded on the host", "give an absolute path")
        return val

    def preset(self, t: dict[str, Any]) -> str | None:
        from engine.presets import PRESETS

        val = t.get("preset")
        if val is not None and val not in PRESETS:
            raise self.error("cluster.preset", f"unknown preset {val!r}", f"use one of: {', '.join(PRESETS)}")
        return val

    def count(self, t: dict[str, Any], where: str, key: str) -> int | None:
        val = t.get(key)
        if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < 1):
            raise self.error(f"{where}.{key}", f"must be an integer >= 1, got {val!r}", "e.g. 12")
        return val

    def choice(self, t: dict[str, Any], where: str, key: str, allowed: tuple[str, ...], default: str) -> str:
        val = t.get(key, default)
        if val not in allowed:
            raise self.error(
                f"{where}.{key}", f"{val!r} is not supported", f"use one of: {', '.join(allowed)}"
            )
        return val

    def number(self, t: dict[str, Any], where: str, key: str, default: float) -> float:
        val = t.get(key, default)
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not 0 < val < float("inf"):
            raise self.error(f"{where}.{key}", f"must be a positive finite number, got {val!r}", "e.g. 10")
        return float(val)

    def port(self, t: dict[str, Any], where: str, key: str, default: int, allow_zero: bool = False) -> int:
        val = t.get(key, default)
        lo = 0 if allow_zero else 1
        if isinstance(val, bool) or not isinstance(val, int) or not lo <= val <= 65535:
            hint = "0 (pick a free one) or 1..65535" if allow_zero else "1..65535"
            raise self.error(f"{where}.{key}", f"bad port {val!r}", f"use {hint}")
        return val

    def host(
        self, raw: dict[str, Any], i: int, cluster: Cluster, defaults: dict[str, Any], seen: set[str],
        first_stage: int,
    ) -> Host:
        where = f"hosts[{i}]"
        self.unknown(raw, _HOST_KEYS, where)
        for key in ("name", "address"):
            if key not in raw:
                raise self.error(f"{where}.{key}", "missing", f"add {key} = \"...\" to this host")
        name = self.string(raw, where, "name", None)
        if name in seen:
            raise self.error(f"{where}.name", f"duplicate host name {name!r}", "give each host its own name")
        if not all(c.isalnum() or c in "-_." for c in name):
            raise self.error(f"{where}.name", f"bad host name {name!r}", "use letters, digits, - _ .")
        seen.add(name)
        work_dir = self.string(raw, where, "work_dir", f"{cluster.work_dir}/{name}")
        if work_dir.startswith("~"):
            raise self.error(f"{where}.work_dir", f"{work_dir!r}: ~ is not expanded on the host",
                             "give a path relative to the login home or an absolute one")
        # Deployed hosts run the venv that `pmctl setup` builds in their work dir.
        python = self.interpreter(raw, where, "python", defaults["python"]) or f"{work_dir}/venv/bin/python"
        identity = self.string(raw, where, "identity_file", defaults["identity_file"])
        if identity is not None:
            identity = str(Path(identity).expanduser())
            if not Path(identity).is_file():
                raise self.error(
                    f"{where}.identity_file", f"file {identity} does not exist",
                    "point it at your private key, or remove it to use the ssh agent",
                )
        gpus = raw.get("gpus", 0)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise self.error(f"{where}.gpus", f"must be an integer >= 0, got {gpus!r}", "e.g. gpus = 1")
        if cluster.device == "cuda" and gpus == 0 and "gpus" in raw:
            raise self.error(f"{where}.gpus", "0 GPUs on a cuda cluster", "set gpus = 1 or device = \"cpu\"")
        return Host(
            name=name,
            address=self.string(raw, where, "address", None),
            stage=first_stage,
            work_dir=work_dir,
            python=python,
            user=self.string(raw, where, "user", defaults["user"]),
            port=self.port(raw, where, "port", 22),
            identity_file=identity,
            gpus=gpus,
            interface=self.string(raw, where, "interface", defaults["interface"]),
            base_python=self.interpreter(raw, where, "base_python", defaults["base_python"]),
            num_stages=max(gpus, 1),
        )
