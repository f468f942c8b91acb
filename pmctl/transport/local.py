"""Local transport: the embedded cluster's "hosts" are process groups on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from pmctl.inventory import Host
from pmctl.transport.base import (
    TOKEN_VAR,
    ProcessHandle,
    Result,
    TransportError,
    env_file_text,
    group_script,
    wrapper_script,
)


class LocalTransport:
    """Runs commands with bash on this machine; detached starts get a new session."""

    lost = None  # this machine is always there

    def __init__(self, host: Host) -> None:
        self.host = host
        # Keep our Popen objects so finished leaders are reaped, not left as zombies.
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def run(self, cmd: str, timeout: float) -> Result:
        try:
            # Own session: a Ctrl-C in pmctl's terminal must not kill a cleanup step midway.
            p = subprocess.run(
                ["bash", "-c", cmd], capture_output=True, text=True, timeout=timeout,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise TransportError(f"{self.host.name}: command timed out after {timeout:g} s") from exc
        return Result(p.returncode, p.stdout, p.stderr)

    def start(
        self, name: str, cmd: str, env: Mapping[str, str], run_dir: str, token: str
    ) -> ProcessHandle:
        d = Path(run_dir)
        d.mkdir(parents=True, exist_ok=True)
        self.write_text(str(d / f"{name}.env"), env_file_text({**env, TOKEN_VAR: token}))
        for stale in (f"{name}.pid", f"{name}.rc"):
            (d / stale).unlink(missing_ok=True)
        proc = subprocess.Popen(
            ["bash", "-c", wrapper_script(name, cmd, str(d.resolve()))],
            env={**os.environ, TOKEN_VAR: token},
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._children[proc.pid] = proc
        return ProcessHandle(self.host.name, name, proc.pid, token, str(d))

    def _reap(self, handle: ProcessHandle) -> None:
        child = self._children.get(handle.pgid)
        if child is not None and child.poll() is not None:
            del self._children[handle.pgid]

    def alive(self, handle: ProcessHandle) -> bool:
        self._reap(handle)
        return self.run(group_script(handle.pgid, handle.token, "alive"), 10).stdout.strip() == "1"

    def poll(self, handle: ProcessHandle) -> int | None:
        self._reap(handle)
        try:
            return int(Path(handle.rc_path).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self, handle: ProcessHandle, grace: float = 5.0) -> None:
        self.run(group_script(handle.pgid, handle.token, "stop", grace), grace + 10)
        self._reap(handle)

    def put(self, local: str, remote: str) -> None:
        self._copy(local, remote)

    def get(self, remote: str, local: str) -> None:
        self._copy(remote, local)

    def _copy(self, src: str, dst: str) -> None:
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(src, dst)
        except OSError as exc:
            raise TransportError(f"{self.host.name}: cannot copy {src} to {dst}: {exc}") from exc

    def write_text(self, remote: str, text: str, mode: int = 0o600) -> None:
        p = Path(remote)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.unlink(missing_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)

    def close(self) -> None:
        # Reap leaders that already exited; running ones stay detached on purpose.
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[pid]

