"""Atomic, durable JSON files (torch-free, so pmctl and figures can share it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def fsync_path(path: str | Path) -> None:
    """Flushes a file's or a folder's content (a folder's: the names in it, so a rename into it
    survives a power cut) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Writes ``data`` as indented, key-sorted JSON to ``path`` through a temporary sibling and
    a rename, so a reader sees the old file or the new one, never half of one; the temporary is
    on disk before the rename and the rename before the return."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    # The pid keeps two writers of the same file from sharing a temporary.
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not keep a half temporary
        raise
    fsync_path(p.parent)
    return p
