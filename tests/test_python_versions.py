"""Packaging: torch is only in the `engine` extra, and the controller alone (`pip install .`)
installs and works in a fresh venv of the newest and the oldest supported Python (3.13, 3.10)
without torch."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.sources import copy_sources

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_torch_is_only_in_the_engine_extra() -> None:
    from pmctl.wheel import runtime_requirements

    project = _pyproject()
    assert not [d for d in project["dependencies"] if d.lower().startswith("torch")]
    assert [d for d in project["optional-dependencies"]["engine"] if d.startswith("torch")] == ["torch>=2.4"]
    # What `pmctl setup` installs on a host beside the --no-deps wheel: never torch.
    assert runtime_requirements() == project["dependencies"]
    assert project["requires-python"] == ">=3.10,<3.14"


def _python(version: str) -> str | None:
    """A working python<version> with the venv module: pyenv's, else the one on PATH (a pyenv
    shim on PATH may name a version that is not selected, so each candidate is tried)."""
    pyenv = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")), reverse=True)
    for candidate in [*pyenv, shutil.which(f"python{version}")]:
        if candidate is None:
            continue
        try:
            r = subprocess.run([candidate, "-c", "import sys, venv; print(sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0 and r.stdout.strip() == str(tuple(map(int, version.split(".")))):
            return candidate
    return None


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("version", ["3.13", "3.10"])
def test_controller_installs_and_runs_without_torch(tmp_path: Path, version: str) -> None:
    python = _python(version)
    if python is None:
        pytest.skip(f"no working python{version} with the venv module on this machine (on PATH or in ~/.pyenv/versions)")
    src = tmp_path / "src"
    copy_sources(src)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMCTL_", "VIRTUAL_ENV", "PYTHON"))}
    env["PMCTL_STATE_DIR"] = str(tmp_path / ".pmctl")
    venv = tmp_path / "venv"
    _run([python, "-m", "venv", str(venv)], tmp_path, env, 120)
    vpy, pmctl = str(venv / "bin" / "python"), str(venv / "bin" / "pmctl")
    # The controller only: the project's base dependencies, no extra.
    _run([vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(src)], tmp_path, env, 480)

    work = tmp_path / "work"  # no inventory.toml here: the built-in local cluster
    work.mkdir()
    shown = _run([pmctl, "--version"], work, env, 60)
    import pmctl as here

    assert shown.stdout.strip() == f"pmctl {here.__version__}"
    listed = _run([pmctl, "list"], work, env, 120)
    assert "fig15" in listed.stdout and "fig19" in listed.stdout
    sim = _run([pmctl, "simulate", "--schedule", "zb", "--stages", "4", "--microbatches", "8", "--json"], work, env, 120)
    result = json.loads(sim.stdout)
    # ZB with F = B = W = 10 ms: 3 x 8 micro-batches of work plus the 3-stage fill, no bubbles else.
    assert result["iteration_time"] == 270 and len(result["warmup"]) == 4
    _run([pmctl, "simulate", "--schedule", "zb", "--stages", "4", "--microbatches", "8"], work, env, 120)

    facts = _run([vpy, "-c", (
        "import importlib.metadata as m, importlib.util as u, sys; "
        "print(sys.version_info[:2]); print(u.find_spec('torch') is None); "
        "print([r for r in m.requires('pmctl') if r.startswith('torch')])"
    )], work, env, 60).stdout.splitlines()
    assert facts[0] == str(tuple(map(int, version.split("."))))
    assert facts[1] == "True", "torch was installed with the controller"
    assert facts[2] == "['torch>=2.4; extra == \"engine\"']"
