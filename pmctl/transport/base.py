"""The transport Protocol: run a command on a host, start/stop a detached process group, move
files. Two implementations (local processes, SSH through Fabric) behind one interface so that
deploy, launch and collect are written once.

Detached processes are wrapped by ``wrapper_script`` on every host: it records the process
group id and, when the command ends, its exit code in files next to its logs, and carries a
per-run token in its environment so that stopping later can prove a group is still ours.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pmctl.errors import UserError
from pmctl.inventory import Host

TOKEN_VAR = "PMCTL_TOKEN"


@dataclass(frozen=True)
class Result:
    """Outcome of a command run to completion."""

    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


@dataclass(frozen=True)
class ProcessHandle:
    """A detached process group on a host; plain data so the run ledger can store it."""

    host: str
    name: str  # "stage", "redis", ...
    pgid: int
    token: str  # value of PMCTL_TOKEN in the group's environment
    run_dir: str  # holds <name>.pid, <name>.rc, <name>.out, <name>.err, <name>.env

    @property
    def out_path(self) -> str:
        return f"{self.run_dir}/{self.name}.out"

    @property
    def err_path(self) -> str:
        return f"{self.run_dir}/{self.name}.err"

    @property
    def rc_path(self) -> str:
        return f"{self.run_dir}/{self.name}.rc"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ProcessHandle:
        return cls(**{k: d[k] for k in ("host", "name", "pgid", "token", "run_dir")})


class TransportError(UserError):
    """A host could not be reached or a file could not be moved; the message names the host."""


class HostUnreachable(TransportError):
    """The host stopped answering altogether (powered off, off the network, its sshd gone): no
    later call there can succeed, so a run ends instead of failing each remaining cell slowly."""


class Transport(Protocol):
    """Everything pmctl does to a host."""

    host: Host
    # Set once the host was found not answering at all (never for local processes).
    lost: HostUnreachable | None

    def run(self, cmd: str, timeout: float) -> Result:
        """Runs a bash command to completion (non-zero exit is a Result, not an exception)."""
        ...

    def start(self, name: str, cmd: str, env: Mapping[str, str], run_dir: str, token: str) -> ProcessHandle:
        """Starts ``cmd`` detached in its own process group with ``env`` (passed through a
        0600 env file, never the command line) and returns its handle."""
        ...

    def stop(self, handle: ProcessHandle, grace: float = 5.0) -> None:
        """TERMs the group, KILLs it after ``grace`` seconds; a group that is gone or not
        ours (token mismatch) is left alone. Idempotent."""
        ...

    def alive(self, handle: ProcessHandle) -> bool:
        """Whether any (non-zombie) process of the group still runs."""
        ...

    def poll(self, handle: ProcessHandle) -> int | None:
        """The command's exit code once it has finished, else None."""
        ...

    def put(self, local: str, remote: str) -> None:
        """Copies a local file to the host."""
        ...

    def get(self, remote: str, local: str) -> None:
        """Copies a file from the host."""
        ...

    def write_text(self, remote: str, text: str, mode: int = 0o600) -> None:
        """Writes a file on the host, created with ``mode`` before any content lands."""
        ...

    def close(self) -> None:
        """Releases connections."""
        ...


def wrapper_script(name: str, cmd: str, run_dir: str) -> str:
    """Bash that records the group id, sources the env file, runs ``cmd`` and records its
    exit code. Runs as the leader of a new session, so ``$$`` is the process group id."""
    d = shlex.quote(run_dir)
    return (
        f"cd {d} && echo $$ > {name}.pid && set -a && . ./{name}.env && set +a && "
        f"( {cmd} ) > {name}.out 2> {name}.err < /dev/null; "
        f"echo $? > {name}.rc.tmp && mv {name}.rc.tmp {name}.rc"
    )


def env_file_text(env: Mapping[str, str]) -> str:
    """``KEY='value'`` lines for ``set -a; . file``."""
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items())


def token_sweep_script(token: str, grace: float = 5.0) -> str:
    """Bash that TERMs, then KILLs after ``grace``, every process on the host that carries
    ``token`` in its environment, whatever its group: what a recorded group stop cannot reach
    (a start interrupted before it was recorded, workers torchrun put in their own sessions)."""
    steps = int(max(grace, 0.1) / 0.1)
    # One grep over every environment (NUL-separated entries): cheap even on a busy host.
    return (
        f"tokened() {{ grep -lsxzF {TOKEN_VAR}={token} /proc/[0-9]*/environ | cut -d/ -f3; }}; "
        f'p=$(tokened); [ -z "$p" ] && exit 0; kill -TERM $p 2>/dev/null; '
        f'for i in $(seq {steps}); do p=$(tokened); [ -z "$p" ] && exit 0; sleep 0.1; done; '
        f"kill -KILL $(tokened) 2>/dev/null; exit 0"
    )


def group_script(pgid: int, token: str, action: str, grace: float = 5.0) -> str:
    """Bash that checks/kills a process group, acting only if one of its live members carries
    our token. ``action``: "alive" prints 1/0; "stop" TERMs then KILLs after ``grace``."""
    members = (
        f"members() {{ for p in $(ps -eo pid=,pgid=,stat= | "
        f"awk '$2=={pgid} && $3 !~ /^Z/ {{print $1}}'); do "
        f"tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | grep -qx {TOKEN_VAR}={token} && echo $p; "
        f"done; }}; "
    )
    if action == "alive":
        return members + 'if [ -n "$(members)" ]; then echo 1; else echo 0; fi'
    steps = int(max(grace, 0.1) / 0.1)
    return members + (
        f'[ -z "$(members)" ] && exit 0; kill -TERM -- -{pgid} 2>/dev/null; '
        f'for i in $(seq {steps}); do [ -z "$(members)" ] && exit 0; sleep 0.1; done; '
        f"kill -KILL -- -{pgid} 2>/dev/null; sleep 0.1; exit 0"
    )
