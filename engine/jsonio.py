"""Atomic JSON files (torch-free, so pmctl and figures can share it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Writes ``data`` as indented, key-sorted JSON to ``path`` through a temporary sibling and
    a rename, so a reader sees the old file or the new one, never half of one."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    # The pid keeps two writers of the same file from sharing a temporary.
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p
