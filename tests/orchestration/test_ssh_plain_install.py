"""A real SSH cluster from a plain install: pmctl installed from its wheel (not editable) into a
fresh venv that has no setuptools (as a Python 3.12+ venv has none), driving the namespace
sshd hosts with the shape of the README's four-VM example: a relative ``work_dir`` (so the
hosts' venv python is a relative path, to the login home), ``deploy = "wheel"``, the default
launcher, and ``gpus = 2`` (two stages per host)."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.orchestration.support import NetnsCluster, pmctl_env
from tests.sources import copy_sources

ROOT = Path(__file__).resolve().parents[2]
# What a fresh Python 3.12+ venv lacks (and what would shadow the plain install).
_LEFT_OUT = ("setuptools", "pkg_resources", "_distutils_hack", "wheel", "pmctl", "__editable__")
CELL_ARGS = ["fig15", "--quick", "--methods", "zb", "--delays", "60", "--iters", "3", "--fault-at", "1", "--preset", "tiny"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in pmctl_env(tmp).items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    return env


@pytest.fixture(scope="module")
def plain_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The python of a fresh venv with pmctl installed from its wheel (pip's build of a copy of
    the sources, so the checkout gets no build/), no setuptools, and this venv's other
    packages (torch, typer, fabric ...) seen through a folder of links: no package index."""
    d = tmp_path_factory.mktemp("plain")
    src = d / "src"
    copy_sources(src)
    env = _clean_env(d)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(d / "dist"), str(src)], d, env)
    deps = d / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_path("purelib")).iterdir():
        if not entry.name.startswith(_LEFT_OUT) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    _run([sys.executable, "-m", "venv", "--without-pip", str(d / "venv")], d, env)
    python = d / "venv" / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], d, env).stdout.strip())
    (site / "deps.pth").write_text(f"{deps}\n")
    (wheel,) = (d / "dist").glob("pmctl-*.whl")
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--disable-pip-version-check", str(wheel)], d, env)
    where = _run([str(python), "-c", "import pmctl, importlib.util as u; print(pmctl.__file__); print(u.find_spec('setuptools'))"], d, env)
    assert where.stdout.split() == [str(site / "pmctl" / "__init__.py"), "None"], where.stdout
    yield python


@pytest.mark.slow
def test_the_deployed_wheel_builds_from_a_plain_install(plain_python: Path, tmp_path: Path) -> None:
    # No host touched: the plan names the wheel's content hash, then the wheel is built with
    # the plain install's python, which has neither setuptools nor the project's sources.
    env = _clean_env(tmp_path)
    inv = tmp_path / "ssh.toml"
    inv.write_text('[cluster]\ntransport = "ssh"\nwork_dir = "pmctl"\n\n[[hosts]]\nname = "vm0"\naddress = "10.0.0.11"\ngpus = 2\n')
    plan = _run([str(plain_python), "-m", "pmctl", "setup", "--dry-run", "--json", "--inventory", str(inv)], tmp_path, env)
    (line, *_) = json.loads(plan.stdout)["plan"]
    assert line.startswith("vm0 (10.0.0.11, ssh): push wheel ") and "venv pmctl/vm0/venv" in line
    code = "from pmctl.wheel import build_wheel, collect; print(build_wheel(collect()))"
    wheel = Path(_run([str(plain_python), "-c", code], tmp_path, env).stdout.strip())
    assert wheel.name == "pmctl-0.1.0-py3-none-any.whl" and wheel.is_relative_to(tmp_path / ".pmctl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = z.read("pmctl-0.1.0.dist-info/METADATA").decode()
    assert {"engine/train.py", "engine/forkrun.py", "injector/control.py", "pmctl/cli.py", "figures/__init__.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "Requires-Dist: typer" in metadata and "torch" not in metadata
    # pip takes it (RECORD and METADATA well formed) into another fresh venv, offline.
    target = tmp_path / "target"
    _run([str(plain_python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target), str(wheel)], tmp_path, env)
    (installed,) = plain_python.parent.parent.glob("lib/python3*/site-packages/engine/train.py")
    assert (target / "engine" / "train.py").read_bytes() == installed.read_bytes()


def test_relative_host_paths_are_resolved_against_the_login_dir(tmp_path: Path) -> None:
    # A stage starts in its run dir: the host's python must not be relative by then.
    from engine.rendezvous import Rendezvous
    from pmctl.inventory import load_inventory
    from pmctl.launchers import launcher_of, resolve_on_host, stage_command

    assert resolve_on_host("pmctl/vm0/venv/bin/python", "/home/u") == "/home/u/pmctl/vm0/venv/bin/python"
    assert resolve_on_host("../opt/py", "/home/u") == "/home/u/../opt/py"
    assert resolve_on_host("/opt/conda/bin/python", "/home/u") == "/opt/conda/bin/python"
    assert resolve_on_host("python3", "/home/u") == "python3"  # a bare name: looked up on PATH
    inv_file = tmp_path / "inv.toml"
    inv_file.write_text('[cluster]\ntransport = "ssh"\nwork_dir = "pmctl"\n\n'
                        '[[hosts]]\nname = "vm0"\naddress = "10.0.0.11"\n\n[[hosts]]\nname = "vm1"\naddress = "10.0.0.12"\n')
    inv = load_inventory(inv_file)
    assert inv.hosts[0].python == "pmctl/vm0/venv/bin/python"
    (proc, _) = launcher_of(inv).processes(inv)
    cmd = stage_command(inv, proc, Rendezvous(2, 1, "10.0.0.11", 29500), ["-m", "engine.train"], "/home/u")
    assert cmd.startswith("/home/u/pmctl/vm0/venv/bin/python -m torch.distributed.run ")


def _login_home() -> str:
    return pwd.getpwuid(os.geteuid()).pw_dir


@pytest.mark.slow
@pytest.mark.root
def test_setup_and_a_cell_from_a_plain_install_with_a_relative_work_dir(
    netns_cluster: NetnsCluster, plain_python: Path, tmp_path: Path
) -> None:
    # The README's example shape on two hosts with two stages each. The work dir is relative
    # to the login home (sshd's root logs into its home): it reaches tmp_path from there.
    work = tmp_path / "work"
    relative = os.path.relpath(work, _login_home())
    assert not relative.startswith("/")
    hosts = netns_cluster.hosts[:2]
    lines = [
        "[cluster]", 'name = "plain"', 'transport = "ssh"', 'device = "cpu"', 'deploy = "wheel"',
        f'work_dir = "{relative}"', 'user = "root"', f'identity_file = "{netns_cluster.client_key}"',
        f'known_hosts = "{netns_cluster.known_hosts}"', 'interface = "eth0"', "connect_timeout = 5",
        # The hosts' torch: this venv's python, whose site-packages the host venvs reuse.
        f'base_python = "{sys.executable}"', "",
    ]
    for h in hosts:
        lines += ["[[hosts]]", f'name = "{h.name}"', f'address = "{h.address}"', "gpus = 2", ""]
    inv = tmp_path / "inventory.toml"
    inv.write_text("\n".join(lines))
    env = _clean_env(tmp_path)
    pmctl = [str(plain_python), "-m", "pmctl"]

    setup = _run([*pmctl, "setup", "--json"], tmp_path, env, timeout=600)
    report = json.loads(setup.stdout)
    assert report["ok"] and [h["action"] for h in report["hosts"]] == ["installed", "installed"], setup.stdout
    for h in hosts:
        facts = json.loads((tmp_path / ".pmctl" / "hosts" / f"{h.name}.json").read_text())
        assert os.path.normpath(facts["python_path"]) == str(work / h.name / "venv" / "bin" / "python")
        assert facts["project"] is True
        site = next((work / h.name / "venv" / "lib").glob("python3*/site-packages"))
        assert (site / "engine" / "train.py").is_file() and (site / "pmctl-base.pth").is_file()
    again = _run([*pmctl, "setup", "--json"], tmp_path, env, timeout=600)
    assert [h["action"] for h in json.loads(again.stdout)["hosts"]] == ["in sync", "in sync"]

    run = _run([*pmctl, "run", *CELL_ARGS, "--json"], tmp_path, env, timeout=300)
    (cell,) = [json.loads(x) for x in run.stdout.splitlines() if json.loads(x)["type"] == "cell"]
    assert cell["status"] == "done", cell
    record = json.loads((Path(cell["folder"]) if Path(cell["folder"]).is_absolute() else tmp_path / cell["folder"])
                        .joinpath("cell.json").read_text())
    assert record["exit_codes"] == {"h0": 0, "h1": 0}
    assert record["spec"]["stages"] == 4 and record["spec"]["stages_per_host"] == 2
    assert record["spec"]["launcher"] == "torchrun" and record["mean_ms"] > 0
    assert netns_cluster.our_processes() == []
