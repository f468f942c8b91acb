"""Pulling a cell's logs back: each host's op logs (``out/stage<s>.jsonl``) and the streams of
the processes it started, in one tarball per host; then whether every stage's op log came.
A collect that fails raises (``CollectError`` or the transport's error), so that the
teardown keeps that host's run dir: it then holds the only copy."""

from __future__ import annotations

import os
import shlex
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pmctl.inventory import Inventory
from pmctl.transport.base import ProcessHandle, Transport, TransportError

CALL_TIMEOUT_S = 60.0
_NO_RUN_DIR = 3  # the packing command's exit code when the host has no run dir at all


class CollectError(TransportError):
    """A host's logs could not be packed there (its disk is full, say)."""


def collect_host(t: Transport, run_dir: str, started: Sequence[tuple[str, ProcessHandle]], dest: Path) -> None:
    """Copies the host's op logs into ``dest`` and each started process's streams to
    ``<label>.stdout`` / ``<label>.stderr`` (``started``: (label, handle) of the processes
    started on this host; a host with none, as under one agent, only has op logs to give).
    A host without the run dir (its preparation never happened) has nothing to give; any
    other failure raises."""
    streams = {}  # path in the tarball -> name in dest
    for label, h in started:
        streams[os.path.relpath(h.out_path, run_dir)] = f"{label}.stdout"
        streams[os.path.relpath(h.err_path, run_dir)] = f"{label}.stderr"
    names = " ".join(shlex.quote(n) for n in ("out", *streams))
    # tar exits 1 for a file that changed while read (a straggler's last line): still a copy.
    r = t.run(
        f"cd {shlex.quote(run_dir)} 2>/dev/null || exit {_NO_RUN_DIR}; "
        f"tar czf collect.tgz --ignore-failed-read {names} 2>collect.err; "
        '[ $? -le 1 ] || { tail -n 1 collect.err >&2; exit 1; }',
        CALL_TIMEOUT_S,
    )
    if r.rc == _NO_RUN_DIR:
        return
    if not r.ok:
        raise CollectError(f"{t.host.name}: cannot pack the logs in {run_dir}: {r.stderr.strip() or f'exit {r.rc}'}")
    # Unpacked beside the destination: the moves below are then renames on one file
    # system (a tmpfs /tmp would make them fail with EXDEV).
    with tempfile.TemporaryDirectory(dir=dest, prefix=".collect-") as tmp:
        local = Path(tmp) / "c.tgz"
        t.get(f"{run_dir}/collect.tgz", str(local))
        x = Path(tmp) / "x"
        with tarfile.open(local) as tar:
            extract_all(tar, x)
        for f in sorted(x.glob("out/*")):
            f.replace(dest / f.name)
        for rel, name in streams.items():
            src = x / rel
            if src.exists():
                src.replace(dest / name)


def missing_op_logs(inv: Inventory, folder: Path) -> str:
    """Empty when every stage of every host left ``stage<s>.jsonl`` in ``folder``; else one
    line naming the missing stages and their hosts."""
    missing = [f"stage {s} ({h.name})" for h in inv.hosts for s in h.stage_range
               if not (folder / f"stage{s}.jsonl").exists()]
    return f"no op log from {', '.join(missing)}" if missing else ""


def extract_all(tar: tarfile.TarFile, dest: Path) -> None:
    """Extracts safely: the ``data`` filter where this Python has it (3.12, and 3.10.12 /
    3.11.4 backports); older ones get the same refusal of absolute and escaping paths."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for m in tar.getmembers():
        target = (dest / m.name).resolve()
        if not (m.isfile() or m.isdir()) or (target != root and root not in target.parents):
            raise tarfile.TarError(f"refusing to extract {m.name!r}")
    tar.extractall(dest)
