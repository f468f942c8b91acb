"""``pmctl setup``: bring every host to a runnable state, in parallel, idempotently.

``deploy = "wheel"``: build the project's wheel once per content hash (``pmctl.wheel``: from
the packages this pmctl imports, standard library only), push it, create or
update ``<work dir>/venv`` from the host's ``base_python`` and let the venv see that
interpreter's site-packages (so its torch >= 2.4 is reused; a torch wheel is never pulled),
install the wheel without deps plus the non-torch deps (pip skips those the base already has),
and record the hash so hosts already in sync are skipped. ``deploy = "none"``: the project is
already importable by the inventory's python; only the checks run.
Both then check torch, the device (CUDA count) and the backend, look for ``redis-server`` on
the master (apt-installed only with ``install_redis``), and write ``.pmctl/hosts/<name>.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.jsonio import write_json_atomic
from pmctl import runs
from pmctl.errors import UserError
from pmctl.fanout import describe, fanout
from pmctl.inventory import Host, Inventory
from pmctl.launchers import resolve_on_host
from pmctl.session import Session, facts_path
from pmctl.wheel import Bundle, build_wheel, bundle_hash, collect

SETUP_TIMEOUT_S = 900.0
MIN_TORCH = (2, 4)
BASE_PTH = "pmctl-base.pth"
_BASE_SITE = (
    "import site; user = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []; "
    'print("\\n".join(site.getsitepackages() + user))'
)
_VENV_SITE = 'import sysconfig; print(sysconfig.get_path("purelib"))'

# Printed as JSON by the host's python: what the engine needs to run there. torch itself is
# imported only for CUDA clusters (device count, NCCL): on CPU its installed version is read
# from the package metadata, which keeps setup a fraction of a second per host.
_PROBE = r"""
import json, platform, sys
from importlib import metadata, util
out = {"python": platform.python_version(), "python_path": sys.executable}
try:
    out["torch"] = metadata.version("torch").split("+")[0]
    if sys.argv[1] == "cuda":
        import torch
        out["cuda_count"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
        out["nccl"] = bool(torch.distributed.is_available() and torch.distributed.is_nccl_available())
        out["gpu_memory"] = [torch.cuda.get_device_properties(i).total_memory for i in range(out["cuda_count"])]
    else:
        out["cuda_count"] = 0
        out["gloo"] = True  # every Linux torch build ships gloo
except Exception as exc:
    out["torch_error"] = f"{type(exc).__name__}: {exc}"
missing = [m for m in ("engine", "injector", "redis") if util.find_spec(m) is None]
if missing:
    out["project_error"] = "cannot import " + ", ".join(missing)
else:
    out["project"] = True
print("PMCTL-FACTS " + json.dumps(out))
"""


@dataclass
class HostSetup:
    """One host's result: facts, what was done, and any problem (one line)."""

    host: str
    action: str  # "installed" | "in sync" | "checked" | "failed"
    problem: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problem


def plan_lines(inv: Inventory, force: bool, install_redis: bool) -> list[str]:
    """What ``setup`` would do, without touching any host (``--dry-run``)."""
    lines = []
    digest = bundle_hash() if inv.cluster.deploy == "wheel" else ""
    for h in inv.hosts:
        where = f"{h.name} ({h.address}, {inv.cluster.transport})"
        if inv.cluster.deploy == "wheel":
            skip = "" if force else " unless already at this hash"
            lines.append(
                f"{where}: push wheel {digest}, venv {h.work_dir}/venv over {h.base_python} "
                f"(its torch reused, never installed), install --no-deps + non-torch deps{skip}"
            )
        else:
            lines.append(f"{where}: check {h.python} imports the project and torch (deploy = none)")
    redis = "install with apt if missing" if install_redis else "must already be installed"
    lines.append(f"master {inv.master.name}: redis-server {redis}")
    lines.append(f"record fact sheets in {runs.state_dir() / 'hosts'}/<name>.json")
    return lines


def _install(session: Session, host: Host, bundle: Bundle, wheel: Path, force: bool) -> str:
    t = session.transport(host)
    state = t.run(
        f"pwd; printf '%s\\n' \"$(cat {shlex.quote(host.work_dir)}/bundle/hash 2>/dev/null)\" "
        f"\"$(cat {shlex.quote(host.work_dir)}/bundle/base 2>/dev/null)\"; "
        f"test -x {shlex.quote(host.python)} && echo venv-ok", 60,
    ).stdout.splitlines()
    login, recorded_hash, recorded_base = (state + ["", "", ""])[:3]
    venv_ok = "venv-ok" in state[3:]
    if not force and venv_ok and (recorded_hash, recorded_base) == (bundle.digest, host.base_python):
        return "in sync"
    # Absolute from here on: relative paths (the work dir, the venv python of a relative work
    # dir, base_python) are to the folder the host's commands start in (home over ssh).
    work = posixpath.join(login, host.work_dir)
    w = shlex.quote(work)
    venv_py = shlex.quote(resolve_on_host(host.python, login))
    base = shlex.quote(resolve_on_host(host.base_python, login))
    remote_wheel = f"{work}/bundle/{wheel.name}"
    t.put(str(wheel), remote_wheel)
    # The venv sees the base interpreter's site-packages (and its user site, as
    # --system-site-packages would) through a .pth file, after its own, so the project's
    # wheel wins. Unlike --system-site-packages this reaches a conda env or another venv too.
    # The .pth files inside those folders are not run: an editable install of this project
    # in the base must not shadow the pushed wheel. A venv made over another base (or by an
    # older pmctl) is made again.
    if not venv_ok or recorded_base != host.base_python:
        r = t.run(f"{base} -m venv --clear {w}/venv", SETUP_TIMEOUT_S)
        if not r.ok:
            raise UserError(
                f"cannot make a venv with {host.base_python}: {_last_line(r.stderr)}", f"host {host.name}",
                "set base_python to an interpreter with the venv module (e.g. apt install python3-venv)",
            )
    # Check torch first so a host without it fails in seconds instead of after a long pip run.
    # bundle/base keeps the inventory's spelling: it is compared with it next time.
    r = t.run(
        f"site=$({venv_py} -c {shlex.quote(_VENV_SITE)}) && {base} -c {shlex.quote(_BASE_SITE)} > \"$site/{BASE_PTH}\" && "
        f"printf '%s\\n' {shlex.quote(host.base_python)} > {w}/bundle/base && "
        f"{venv_py} -c 'import importlib.metadata as m; print(m.version(\"torch\"))'",
        SETUP_TIMEOUT_S,
    )
    if not r.ok:
        raise UserError(
            f"no torch for {host.python} (a venv over {host.base_python}): {_last_line(r.stderr)}",
            f"host {host.name}",
            "install torch>=2.4 for the host's CUDA into base_python; pmctl never installs torch",
        )
    reqs = " ".join(shlex.quote(q) for q in bundle.requirements)
    pip = f"{venv_py} -m pip install -q --disable-pip-version-check"
    r = t.run(
        f"set -e; {pip} --no-deps --force-reinstall {shlex.quote(remote_wheel)}; "
        f"{pip} {reqs}; echo {bundle.digest} > {w}/bundle/hash",
        SETUP_TIMEOUT_S,
    )
    if not r.ok:
        raise UserError(f"installing failed: {_last_line(r.stderr)}", f"host {host.name}")
    return "installed"


def _last_line(text: str) -> str:
    """The most telling line of a tool's stderr: its last ERROR line, else its last line."""
    lines = [x.strip() for x in text.strip().splitlines() if x.strip() and not x.startswith("[notice]")]
    errors = [x for x in lines if x.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1]


def _probe(session: Session, host: Host) -> dict[str, Any]:
    device = session.inventory.cluster.device
    r = session.transport(host).run(f"{shlex.quote(host.python)} -c {shlex.quote(_PROBE)} {device}", 120)
    for line in r.stdout.splitlines():
        if line.startswith("PMCTL-FACTS "):
            return json.loads(line[len("PMCTL-FACTS "):])
    tail = (r.stderr.strip().splitlines() or [f"exit {r.rc}"])[-1]
    raise UserError(f"cannot run {host.python}: {tail}", f"host {host.name}", "run pmctl setup or fix python in the inventory")


def _problems(inv: Inventory, host: Host, facts: dict[str, Any]) -> str:
    if "torch_error" in facts:
        return f"torch not importable ({facts['torch_error']}): install torch>=2.4 for this host's CUDA; pmctl never installs it"
    version = tuple(int(x) for x in facts["torch"].split(".")[:2] if x.isdigit())
    if version < MIN_TORCH:
        return f"torch {facts['torch']} is older than 2.4: upgrade it on the host"
    if "project_error" in facts:
        return f"project not importable ({facts['project_error']}): run pmctl setup --force"
    if inv.cluster.device == "cuda":
        if facts.get("cuda_count", 0) < 1:
            return "no CUDA device visible, but cluster.device = cuda"
        if not facts.get("nccl"):
            return "torch has no NCCL backend, but cluster.device = cuda"
    elif not facts.get("gloo"):
        return "torch has no gloo backend"
    return ""


def _redis(session: Session, host: Host, install: bool) -> str:
    t = session.transport(host)
    if t.run("command -v redis-server && command -v redis-cli", 60).ok:
        return ""
    if not install:
        return "redis-server/redis-cli missing on the master: install redis-server or rerun with --install-redis"
    r = t.run(
        "export DEBIAN_FRONTEND=noninteractive; S=; [ $(id -u) = 0 ] || S='sudo -n'; "
        "$S apt-get update -qq && $S apt-get install -y -qq redis-server", 600,
    )
    return "" if r.ok else f"apt install redis-server failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}"


def setup_hosts(
    session: Session, force: bool = False, install_redis: bool = False,
    on_host: Callable[[HostSetup], None] | None = None,
) -> list[HostSetup]:
    """Sets up every host in parallel and records fact sheets; problems are per host."""
    inv = session.inventory
    bundle, wheel = None, None
    if inv.cluster.deploy == "wheel":
        bundle = collect()
        wheel = build_wheel(bundle)

    # Local "hosts" sharing one interpreter are one machine: probe it once, not per stage.
    shared: dict[str, dict[str, Any]] = {}
    if inv.cluster.transport == "local" and wheel is None:
        reps = list({h.python: h for h in inv.hosts}.values())
        for o in fanout(reps, lambda h: _probe(session, h), SETUP_TIMEOUT_S, name=lambda h: h.python):
            if o.ok:
                shared[o.host] = o.value

    def one(host: Host) -> HostSetup:
        action = "checked"
        if bundle is not None and wheel is not None:
            action = _install(session, host, bundle, wheel, force)
        facts = dict(shared[host.python]) if host.python in shared else _probe(session, host)
        problem = _problems(inv, host, facts)
        redis_ok = None
        if host is inv.master:
            redis_problem = _redis(session, host, install_redis)
            redis_ok = not redis_problem
            problem = problem or redis_problem
        facts.update(
            host=host.name, address=host.address, stage=host.stage, stages=list(host.stage_range),
            device=inv.cluster.device,
            bundle=bundle.digest if bundle else "none", redis=redis_ok,
            checked=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        )
        result = HostSetup(host.name, action, problem, facts)
        _write_facts(host, facts)
        if on_host:
            on_host(result)
        return result

    results = []
    for o in fanout(list(inv.hosts), one, SETUP_TIMEOUT_S, name=lambda h: h.name):
        if o.ok:
            results.append(o.value)
            continue
        res = HostSetup(o.host, "failed", describe(o.error))
        results.append(res)
        if on_host:
            on_host(res)
    return results


def _write_facts(host: Host, facts: dict[str, Any]) -> None:
    write_json_atomic(facts_path(host), facts)
