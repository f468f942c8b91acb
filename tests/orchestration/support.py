"""Helpers for the orchestration tests and bench: running pmctl, the stand-in engine, local
inventories, and real SSH hosts built from network namespaces on a bridge, each with its own
sshd.

The namespace hosts share this machine's filesystem, so their inventory uses the no-deploy
fast path (``deploy = "none"``, ``python`` = this venv's python) and a work dir per host.
``build_netns_cluster`` removes everything it built on exit, also after an error.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAKE_ENGINE = HERE / "fake_engine.py"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def pmctl_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a pmctl subprocess: state in tmp_path, no inherited inventory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PMCTL_")}
    env.update(PMCTL_STATE_DIR=str(tmp_path / ".pmctl"), COLUMNS="200", **extra)
    return env


def run_pmctl(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -m pmctl ARGS`` as a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "pmctl", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=timeout,
    )


def fake_entry(tmp_path: Path, iter_s: float = 0.2, fail_stage: int | None = None, gloo: bool = False) -> str:
    """The ``--engine-entry`` value that runs the stand-in engine with these settings."""
    cfg = tmp_path / f"fake-{iter_s}-{fail_stage}-{gloo}.json"
    cfg.write_text(json.dumps({"iter_s": iter_s, "fail_stage": fail_stage, "gloo": gloo}))
    return f"{FAKE_ENGINE} --fake-config {cfg}"


def wait_all_stages_logged(work_dirs: list[Path], timeout: float = 120) -> None:
    """Waits until every host's stage has logged an op (hosts share this filesystem)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(any('"kind":"op"' in f.read_text() for f in w.glob("runs/*/out/stage*.jsonl")) for w in work_dirs):
            return
        time.sleep(0.2)
    raise AssertionError("the stages never all logged an op")


def write_local_inventory(path: Path, work: Path, launcher: str | None = None) -> Path:
    """A local 4-stage inventory with its work dirs under ``work`` (launcher None: the
    default, fork)."""
    path.write_text(
        f'[cluster]\nname = "local-test"\ntransport = "local"\nstages = 4\n'
        f'work_dir = "{work}"\npython = "{sys.executable}"\n'
        + (f'launcher = "{launcher}"\n' if launcher else "")
    )
    return path


# -- network-namespace SSH hosts ---------------------------------------------------------


@dataclass
class NetnsHost:
    name: str
    netns: str
    address: str
    sshd: subprocess.Popen[bytes] | None
    config: Path


@dataclass
class NetnsCluster:
    """Four SSH hosts; ``inventory`` points at them with keys checked against known_hosts."""

    hosts: list[NetnsHost]
    inventory: Path
    known_hosts: Path
    client_key: Path
    dir: Path
    bridge_address: str

    def work_dirs(self) -> list[Path]:
        return [self.dir / "work" / h.name for h in self.hosts]

    def stop_sshd(self, i: int) -> None:
        h = self.hosts[i]
        if h.sshd is not None:
            h.sshd.terminate()
            h.sshd.wait(10)
            h.sshd = None

    def start_sshd(self, i: int) -> None:
        h = self.hosts[i]
        if h.sshd is None:
            h.sshd = _start_sshd(h)

    def pids(self, i: int) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.hosts[i].netns], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def our_processes(self) -> list[str]:
        """Command lines of pmctl-started processes (token in env) in any namespace."""
        found = []
        for i in range(len(self.hosts)):
            for pid in self.pids(i):
                try:
                    env = Path(f"/proc/{pid}/environ").read_bytes()
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                if b"PMCTL_TOKEN=" in env:
                    found.append(f"{self.hosts[i].name}: {cmd.decode(errors='replace')}")
        return found

    def write_inventory(
        self, path: Path, hosts: list[int] | None = None, known_hosts: Path | None = None,
        launcher: str = "torchrun", wheel: bool = False, base_python: str = sys.executable,
        gpus: int = 0,
    ) -> Path:
        """An inventory for these hosts: by default the no-deploy fast path (this venv's
        python); ``wheel``: real wheel deploys into a venv per host over ``base_python``
        (this venv's python: its torch and dependencies are reused, no package index needed);
        ``gpus``: that many stages per host (on this CPU cluster)."""
        idx = hosts if hosts is not None else list(range(len(self.hosts)))
        python = f'base_python = "{base_python}"' if wheel else f'python = "{sys.executable}"'
        lines = [
            "[cluster]", 'name = "netns"', 'transport = "ssh"', 'device = "cpu"',
            f'deploy = "{"wheel" if wheel else "none"}"', python,
            'user = "root"', f'identity_file = "{self.client_key}"',
            f'known_hosts = "{known_hosts or self.known_hosts}"', 'interface = "eth0"', "connect_timeout = 5",
            f'launcher = "{launcher}"', "",
        ]
        for i in idx:
            h = self.hosts[i]
            lines += ["[[hosts]]", f'name = "{h.name}"', f'address = "{h.address}"', f'work_dir = "{self.dir}/work/{h.name}"']
            lines += [f"gpus = {gpus}", ""] if gpus else [""]
        path.write_text("\n".join(lines))
        return path


def _sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True)


def _start_sshd(h: NetnsHost) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        ["ip", "netns", "exec", h.netns, SSHD, "-D", "-e", "-f", str(h.config)],
        stdout=subprocess.DEVNULL, stderr=open(h.config.with_suffix(".log"), "ab"),
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((h.address, 22), timeout=0.5).close()
            return p
        except OSError:
            if p.poll() is not None:
                log = h.config.with_suffix(".log").read_text()[-300:]
                raise RuntimeError(f"sshd for {h.name} exited: {log}") from None
            time.sleep(0.05)
    p.kill()
    raise RuntimeError(f"sshd for {h.name} did not listen")


def why_no_netns() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces and sshd)"
    if not shutil.which("ip"):
        return "iproute2 (ip) not installed"
    if not os.path.exists(SSHD):
        return "openssh-server (sshd) not installed"
    if not shutil.which("ssh-keygen"):
        return "ssh-keygen not installed"
    probe = f"pmprobe{os.getpid() % 100000}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create network namespaces: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@contextmanager
def build_netns_cluster(d: Path, n: int = 4) -> Iterator[NetnsCluster]:
    """``n`` hosts in namespaces on one bridge (10.77.<k>.1..n/24, this side .254), each with
    its own sshd; everything is removed on exit, also after an error."""
    tag = os.getpid() % 100000
    subnet = f"10.77.{os.getpid() % 250}"
    bridge = f"pmbr{tag}"
    hosts: list[NetnsHost] = []
    try:
        _sh("ip", "link", "add", bridge, "type", "bridge")
        _sh("ip", "addr", "add", f"{subnet}.254/24", "dev", bridge)
        _sh("ip", "link", "set", bridge, "up")
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client_key"))
        (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
        Path("/run/sshd").mkdir(exist_ok=True)
        known = []
        for i in range(n):
            ns, veth = f"pmns{tag}h{i}", f"pm{tag}h{i}"
            addr = f"{subnet}.{i + 1}"
            _sh("ip", "netns", "add", ns)
            hosts.append(NetnsHost(f"h{i}", ns, addr, None, d / f"sshd{i}.conf"))
            _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _sh("ip", "link", "set", veth, "master", bridge, "up")
            _sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _sh("ip", "-n", ns, "link", "set", "eth0", "up")
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            key = d / f"host{i}_key"
            _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
            known.append(f"{addr} {' '.join(key.with_suffix('.pub').read_text().split()[:2])}\n")
            hosts[-1].config.write_text(
                f"Port 22\nListenAddress {addr}\nHostKey {key}\nPidFile {d}/sshd{i}.pid\n"
                f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                "StrictModes no\nSubsystem sftp internal-sftp\nMaxSessions 50\nMaxStartups 50\n"
            )
            hosts[-1].sshd = _start_sshd(hosts[-1])
        (d / "known_hosts").write_text("".join(known))
        cluster = NetnsCluster(hosts, d / "inventory.toml", d / "known_hosts", d / "client_key", d, f"{subnet}.254")
        cluster.write_inventory(cluster.inventory)
        yield cluster
    finally:
        for h in hosts:
            if h.sshd is not None:
                os.killpg(h.sshd.pid, signal.SIGKILL)
                h.sshd.wait(10)
            for pid in subprocess.run(["ip", "netns", "pids", h.netns], capture_output=True, text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", h.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def set_host_link(cluster: NetnsCluster, i: int, up: bool) -> None:
    """Takes host ``i``'s network link down (it vanishes, as a powered-off machine: nothing
    answers, nothing is refused) or brings it back up."""
    _sh("ip", "-n", cluster.hosts[i].netns, "link", "set", "dev", "eth0", "up" if up else "down")


def kill_tokened_processes(token: str) -> None:
    """SIGKILLs every process on this machine (any namespace) that carries pmctl's ``token``
    in its environment: a test's last resort, so nothing it started outlives it."""
    needle = f"PMCTL_TOKEN={token}".encode()
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and needle in (d / "environ").read_bytes().split(b"\0"):
                os.kill(int(d.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue
