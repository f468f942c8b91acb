"""A copy of the project's sources for install tests, so a build leaves nothing (build/,
*.egg-info) in the checkout."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "pmctl", "engine", "injector", "figures")


def copy_sources(dest: Path) -> Path:
    """Copies what a wheel of the project is built from into ``dest`` (returned)."""
    for name in SOURCES:
        item = ROOT / name
        if item.is_dir():
            shutil.copytree(item, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item, dest / name)
    return dest
