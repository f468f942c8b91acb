"""The wheel ``pmctl setup`` pushes to the hosts, built from the packages this pmctl imports.

The same from a checkout (editable or not installed) and from a plain ``pip install``: the
sources are the ``.py`` files of the project's packages wherever they are imported from, so an
installed pmctl deploys exactly itself. The wheel is written with the standard library only
(zip + METADATA + WHEEL + RECORD): no pip, setuptools or package index on the controller (a
Python 3.12+ venv has no setuptools), and the same bytes for the same sources, so hosts
already at a bundle's hash are skipped.

The dependencies it declares are the base ones except torch (hosts keep their own torch):
``pyproject.toml``'s where pmctl runs from a checkout, else the installed distribution's.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from pmctl import __version__, runs

NAME = "pmctl"
PACKAGES = ("pmctl", "engine", "injector", "figures")  # as pyproject's packages.find
# The folder that holds the packages: the checkout, or site-packages of a plain install.
SOURCE_ROOT = Path(__file__).resolve().parent.parent
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same sources give the same wheel


@dataclass(frozen=True)
class Bundle:
    """What goes to the hosts: the version, the non-torch dependencies and the sources."""

    version: str
    requirements: tuple[str, ...]
    files: tuple[tuple[str, bytes], ...]  # (path in the wheel, content), sorted

    @cached_property
    def digest(self) -> str:
        """Content hash (16 hex digits): the hosts record it and are skipped when in sync."""
        h = hashlib.sha256(f"{NAME}\0{self.version}\0".encode())
        h.update("\0".join(self.requirements).encode() + b"\0\0")
        for name, data in self.files:
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()[:16]

    @property
    def wheel_name(self) -> str:
        return f"{NAME}-{self.version}-py3-none-any.whl"


def runtime_requirements() -> list[str]:
    """The project's base dependencies except torch (the hosts keep their own torch)."""
    pyproject = SOURCE_ROOT / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"] if pyproject.is_file() else {}
    if project.get("name") == NAME:
        deps = project["dependencies"]
    else:
        # A plain install: its metadata, minus the extras' requirements (torch is one).
        deps = [r for r in metadata.requires(NAME) or [] if "extra ==" not in r.partition(";")[2]]
    return [d for d in deps if not d.replace(" ", "").lower().startswith("torch")]


def collect() -> Bundle:
    """The bundle of the pmctl running now."""
    files = []
    for pkg in PACKAGES:
        for path in sorted((SOURCE_ROOT / pkg).rglob("*.py")):
            if "__pycache__" not in path.parts:
                files.append((path.relative_to(SOURCE_ROOT).as_posix(), path.read_bytes()))
    return Bundle(__version__, tuple(runtime_requirements()), tuple(sorted(files)))


def bundle_hash() -> str:
    """The content hash of the pmctl running now (what the hosts are compared with)."""
    return collect().digest


def build_wheel(bundle: Bundle) -> Path:
    """The bundle's wheel, written once into ``.pmctl/wheels/<digest>/``."""
    out = runs.state_dir() / "wheels" / bundle.digest
    wheel = out / bundle.wheel_name
    if wheel.is_file():
        return wheel
    out.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a concurrent setup or an interrupted one never sees half a wheel.
    fd, tmp = tempfile.mkstemp(dir=out, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in _wheel_files(bundle):
                info = zipfile.ZipInfo(name, _ZIP_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, data)
        os.replace(tmp, wheel)
    except BaseException:
        os.unlink(tmp)
        raise
    return wheel


def _wheel_files(bundle: Bundle) -> list[tuple[str, bytes]]:
    """The sources, then the ``.dist-info`` files, RECORD last (it lists the others)."""
    info = f"{NAME}-{bundle.version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {bundle.version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in bundle.requirements)
    tags = "Wheel-Version: 1.0\nGenerator: pmctl\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files = [*bundle.files, (f"{info}/METADATA", meta.encode()), (f"{info}/WHEEL", tags.encode())]
    record = io.StringIO()
    rows = csv.writer(record, lineterminator="\n")
    for name, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.writerow([name, f"sha256={digest}", len(data)])
    rows.writerow([f"{info}/RECORD", "", ""])
    return [*files, (f"{info}/RECORD", record.getvalue().encode())]
