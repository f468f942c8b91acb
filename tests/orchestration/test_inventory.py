"""Inventory validation: every bad inventory is one UserError naming the file, field and fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pmctl.errors import UserError
from pmctl.inventory import BUILTIN_NAME, load_inventory

ROOT = Path(__file__).resolve().parent.parent.parent

SSH_HEAD = '[cluster]\ntransport = "ssh"\n'


def _hosts(n: int, extra: str = "") -> str:
    return "".join(f'[[hosts]]\nname = "h{i}"\naddress = "10.0.0.{i + 1}"\n{extra}\n' for i in range(n))


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ('[cluster]\ntransport = "local"\nstages = 4\ncolour = "red"\n', "cluster.colour", "unknown key"),
        (SSH_HEAD + _hosts(2) + '[[hosts]]\nname = "h2"\naddress = "x"\nrole = "a"\n', "hosts[2].role", "unknown key"),
        ("[other]\nx = 1\n", "other", "unknown key"),
        ('[cluster]\ntransport = "k8s"\nstages = 4\n', "cluster.transport", "not supported"),
        ('[cluster]\ndevice = "tpu"\nstages = 4\n', "cluster.device", "not supported"),
        ('[cluster]\ndeploy = "rsync"\nstages = 4\n', "cluster.deploy", "not supported"),
        (SSH_HEAD + _hosts(2) + '[[hosts]]\naddress = "x"\n', "hosts[2].name", "missing"),
        (SSH_HEAD + _hosts(2) + '[[hosts]]\nname = "h9"\n', "hosts[2].address", "missing"),
        (SSH_HEAD + _hosts(2) + '[[hosts]]\nname = "h1"\naddress = "y"\n', "hosts[2].name", "duplicate"),
        (SSH_HEAD + _hosts(2, "port = 70000"), "hosts[0].port", "bad port"),
        (SSH_HEAD + _hosts(2, "port = 0"), "hosts[0].port", "bad port"),
        (SSH_HEAD + 'redis_port = -1\n' + _hosts(2), "cluster.redis_port", "bad port"),
        (SSH_HEAD + _hosts(2, 'identity_file = "/nonexistent/key"'), "hosts[0].identity_file", "does not exist"),
        (SSH_HEAD + 'identity_file = "/nonexistent/key"\n' + _hosts(2), "hosts[0].identity_file", "does not exist"),
        (SSH_HEAD + "stages = 4\n" + _hosts(3), "hosts", "3 hosts run 3 stages but cluster.stages = 4"),
        (SSH_HEAD + _hosts(1), "hosts", "at least 2"),
        (SSH_HEAD, "hosts", "no [[hosts]]"),
        ('[cluster]\nstages = 1\n', "cluster.stages", ">= 2"),
        ("# empty\n", "cluster", "missing [cluster]"),
        (SSH_HEAD + _hosts(2, "gpus = -1"), "hosts[0].gpus", ">= 0"),
        (SSH_HEAD + "connect_timeout = 0\n" + _hosts(2), "cluster.connect_timeout", "positive"),
        ("[cluster\n", "", "not valid TOML"),
        (SSH_HEAD + 'deploy = "none"\n' + _hosts(2), "cluster.python", "no python"),
        ('[cluster]\nstages = 4\nlauncher = "mpirun"\n', "cluster.launcher", "not supported"),
        (SSH_HEAD + _hosts(2, 'base_python = ""'), "hosts[0].base_python", "non-empty string"),
        (SSH_HEAD + _hosts(2, 'base_python = "~/conda/bin/python"'), "hosts[0].base_python", "not expanded"),
        (SSH_HEAD + 'python = "~/venv/bin/python"\n' + _hosts(2), "hosts[0].python", "not expanded"),
        (SSH_HEAD + "connect_timeout = inf\n" + _hosts(2), "cluster.connect_timeout", "finite"),
        (SSH_HEAD + "master_port = 29500\nredis_port = 29500\n" + _hosts(2), "cluster.redis_port", "master_port too"),
        (SSH_HEAD + 'work_dir = "~/pmctl"\n' + _hosts(2), "cluster.work_dir", "not expanded"),
        (SSH_HEAD + _hosts(2, 'work_dir = "~/w"'), "hosts[0].work_dir", "not expanded"),
        (SSH_HEAD + _hosts(2, "gpus = 2") + '[[hosts]]\nname = "h9"\naddress = "z"\n', "hosts[2].gpus",
         "give every host the same number of gpus"),
    ],
)
def test_bad_inventory_is_one_line_with_file_and_field(tmp_path: Path, text: str, field: str, words: str) -> None:
    p = tmp_path / "inv.toml"
    p.write_text(text)
    with pytest.raises(UserError) as err:
        load_inventory(p)
    line = err.value.line()
    assert "\n" not in line
    assert str(p) in line
    if field:
        assert f"{p}: {field}:" in line
    assert words in line
    assert err.value.hint  # every error says how to fix it


def test_missing_file_says_how_to_choose_one(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="inventory file not found.*PMCTL_INVENTORY"):
        load_inventory(tmp_path / "nope.toml")


def test_shipped_inventory_is_the_local_four_stage_cpu_cluster() -> None:
    inv = load_inventory(ROOT / "inventory.toml")
    assert inv.cluster.transport == "local" and inv.cluster.device == "cpu"
    assert [h.name for h in inv.hosts] == ["stage0", "stage1", "stage2", "stage3"]
    assert [h.stage for h in inv.hosts] == [0, 1, 2, 3]
    assert all(h.address == "127.0.0.1" and h.python == sys.executable for h in inv.hosts)
    # Each local "host" gets its own work dir so stages never share files.
    assert len({h.work_dir for h in inv.hosts}) == 4


def test_no_inventory_file_means_the_built_in_local_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As from an installed wheel: no --inventory, no PMCTL_INVENTORY, no ./inventory.toml.
    monkeypatch.delenv("PMCTL_INVENTORY", raising=False)
    monkeypatch.chdir(tmp_path)
    built_in = load_inventory()
    shipped = load_inventory(ROOT / "inventory.toml")
    assert str(built_in.path) == BUILTIN_NAME
    assert built_in.cluster == shipped.cluster and built_in.hosts == shipped.hosts


def test_cluster_defaults_and_per_host_overrides(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("k")
    p = tmp_path / "inv.toml"
    p.write_text(
        SSH_HEAD + f'user = "ubuntu"\nidentity_file = "{key}"\ninterface = "eth0"\nwork_dir = "pm"\n'
        + _hosts(1)
        + '[[hosts]]\nname = "b"\naddress = "10.0.0.9"\nport = 2222\nuser = "root"\ninterface = "ens5"\n'
        'work_dir = "/srv/pm"\npython = "/usr/bin/python3"\n'
    )
    inv = load_inventory(p)
    a, b = inv.hosts
    assert (a.user, a.port, a.interface, a.work_dir, a.identity_file) == ("ubuntu", 22, "eth0", "pm/h0", str(key))
    assert a.python == "pm/h0/venv/bin/python"  # the venv `pmctl setup` builds
    assert (b.user, b.port, b.interface, b.work_dir, b.python) == ("root", 2222, "ens5", "/srv/pm", "/usr/bin/python3")
    assert inv.cluster.launcher == "torchrun"  # over ssh: one torchrun agent per host
    assert a.base_python == b.base_python == "python3"


def test_launcher_and_base_python_defaults_and_overrides(tmp_path: Path) -> None:
    assert load_inventory(ROOT / "inventory.toml").cluster.launcher == "fork"
    p = tmp_path / "inv.toml"
    p.write_text(
        SSH_HEAD + 'launcher = "fork"\nbase_python = "/opt/conda/bin/python"\n' + _hosts(1)
        + '[[hosts]]\nname = "b"\naddress = "10.0.0.9"\nbase_python = "/usr/bin/python3.11"\n'
    )
    inv = load_inventory(p)
    assert inv.cluster.launcher == "fork"
    assert [h.base_python for h in inv.hosts] == ["/opt/conda/bin/python", "/usr/bin/python3.11"]


def test_env_var_chooses_the_inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "other.toml"
    p.write_text('[cluster]\nname = "other"\nstages = 3\n')
    monkeypatch.setenv("PMCTL_INVENTORY", str(p))
    monkeypatch.chdir(tmp_path)
    inv = load_inventory()
    assert inv.cluster.name == "other" and inv.stages == 3
