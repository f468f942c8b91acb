"""Runs one cell on the cluster: trace, Redis on the master, the stages (over SSH one launcher
per host, torchrun by default, static node rank = host order; on the local cluster one launcher
for all stages, since every "host" is this machine: by default engine.forkrun, which imports
torch once and forks the stages), follow live, enforce the timeout, collect logs,
write ``cell.json``, draw the cell's timeline, and stop everything started (process groups TERM then KILL, Redis, shared memory) whatever
happened. Every start is recorded in the run ledger as soon as it returns, so ``pmctl stop``
can clean up after a pmctl that was killed outright.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import secrets
import shlex
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from figures.cells import Cell
from injector.control import PASSWORD_FILE_ENV
from injector.redis_server import generate_password
from injector.trace import Fault, Trace
from pmctl import runs
from pmctl.errors import UserError
from pmctl.fanout import describe, fanout, raise_first
from pmctl.inventory import Host, Inventory
from pmctl.results import DONE, FAILED, INTERRUPTED, CellRecord, Staging
from pmctl.session import Session
from pmctl.transport.base import ProcessHandle, token_sweep_script

ENGINE_ENTRY = ("-m", "engine.train")
CALL_TIMEOUT_S = 60.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchOptions:
    """How cells are run (the CLI's flags that are not part of a cell's spec)."""

    results_root: Path
    timeout_s: float = 900.0
    poll_s: float = 0.25
    grace_s: float = 5.0
    # The launcher's target; tests may point it at a stand-in script.
    engine_entry: tuple[str, ...] = ENGINE_ENTRY


@dataclass
class CellOutcome:
    """What happened to one cell."""

    cell: Cell
    status: str  # done | failed | interrupted | skipped
    folder: Path
    seconds: float = 0.0
    reason: str = ""
    mean_ms: float | None = None
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    follow_seconds: float = 0.0  # from the first stage start to the last stage exit


Progress = Callable[[dict[int, dict[str, Any]]], None]  # stage -> latest heartbeat


class CellInterrupted(KeyboardInterrupt):
    """Raised after an interrupted cell was cleaned up and recorded."""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _run_id(cell: Cell) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{cell.figure}-{cell.method}")
    return f"{safe}-{uuid.uuid4().hex[:8]}"


def trace_text(cell: Cell) -> str:
    """The artifact-compatible trace of a cell (``ITER;LINKS;DELAY``); empty when healthy."""
    if cell.healthy:
        return ""
    crashed = math.isinf(cell.delay_s)
    fault = Fault(links=cell.links, delay_s=cell.delay_s, crashed=crashed, since_iteration=cell.fault_at)
    return Trace((fault,)).to_text()


def single_agent(inv: Inventory) -> bool:
    """Whether one launcher starts every stage: on the local cluster all hosts are this
    machine, so one agent (torchrun's, or forkrun's one torch import) serves them all."""
    return inv.cluster.transport == "local" and inv.cluster.launcher in ("torchrun", "fork")


_LAUNCH_MODULES = {"torchrun": "torch.distributed.run", "fork": "engine.forkrun"}


def launch_hosts(inv: Inventory) -> list[Host]:
    """The hosts that start a stage process: the master alone with a single agent."""
    return [inv.master] if single_agent(inv) else list(inv.hosts)


def stage_command(
    inv: Inventory, host: Host, cell: Cell, run_dir: str, master_port: int,
    control_url: str, run_id: str, entry: tuple[str, ...],
) -> str:
    """The stage command line of one host (no secrets: those come through the env file)."""
    launcher = inv.cluster.launcher
    if launcher == "direct":  # rendezvous settings come through stage_env
        launch = [host.python]
    else:  # torchrun and forkrun take the same static-rendezvous options
        nodes, rank, procs = (1, 0, inv.stages) if single_agent(inv) else (inv.stages, host.stage, 1)
        launch = [
            host.python, "-m", _LAUNCH_MODULES[launcher],
            "--nnodes", str(nodes), "--node-rank", str(rank), "--nproc-per-node", str(procs),
            "--master-addr", inv.master.address, "--master-port", str(master_port),
        ]
    argv = [
        *launch, *entry,
        "--preset", cell.preset, "--method", cell.method,
        "--microbatches", str(cell.microbatches), "--iterations", str(cell.iterations),
        "--seed", str(cell.seed), "--device", inv.cluster.device,
        "--out", f"{run_dir}/out", "--delegates", str(cell.delegates),
        "--control", control_url, "--run-id", run_id,
    ]
    if not cell.healthy:
        argv += ["--trace", f"{run_dir}/trace.txt"]
    return " ".join(shlex.quote(a) for a in argv)


def stage_env(inv: Inventory, host: Host, run_dir: str, master_port: int) -> dict[str, str]:
    """Environment of a stage: where the password file is, which NIC gloo/NCCL use, and for
    the direct launcher what torchrun would have set."""
    env = {PASSWORD_FILE_ENV: f"{run_dir}/password"}
    if host.interface:
        env["GLOO_SOCKET_IFNAME"] = host.interface
        env["NCCL_SOCKET_IFNAME"] = host.interface
    if inv.cluster.device == "cpu":
        # Several stages may share a machine's cores: one compute thread each.
        env["OMP_NUM_THREADS"] = "1"
    if inv.cluster.launcher == "direct":
        env.update(
            MASTER_ADDR=inv.master.address, MASTER_PORT=str(master_port), RANK=str(host.stage),
            WORLD_SIZE=str(inv.stages), LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
            GROUP_RANK=str(host.stage),
        )
    return env


class _CellRun:
    """State of one cell in flight; ``execute`` always ends with everything stopped."""

    def __init__(self, session: Session, cell: Cell, opts: LaunchOptions) -> None:
        self.s = session
        self.inv = session.inventory
        self.cell = cell
        self.opts = opts
        self.run_id = _run_id(cell)
        self.token = secrets.token_hex(8)
        self.run_dirs = {h.name: f"{h.work_dir}/runs/{self.run_id}" for h in self.inv.hosts}
        self.stages: dict[str, ProcessHandle] = {}
        self.redis: ProcessHandle | None = None
        self.password = generate_password()
        self.entry = runs.RunEntry(
            run_id=self.run_id, pmctl_pid=os.getpid(), inventory=str(self.inv.path),
            cell=cell.to_json(), started=_now(), remote_dirs=dict(self.run_dirs),
        )
        self.control: Any = None
        self.cleanup_errors: list[str] = []
        self._starts = threading.Condition()
        self._starts_in_flight = 0

    # -- setup ------------------------------------------------------------------------

    def _record(self, handle: ProcessHandle) -> None:
        self.entry.processes.append(handle)
        runs.save(self.entry)

    def _ports(self) -> tuple[int, int]:
        c = self.inv.cluster
        if c.master_port and c.redis_port:
            return c.master_port, c.redis_port
        code = (
            "import socket\nss=[socket.socket() for _ in range(2)]\n"
            "[s.bind(('',0)) for s in ss]\nprint(*[s.getsockname()[1] for s in ss])"
        )
        r = self.s.transport(self.inv.master).run(
            f"{shlex.quote(self.inv.master.python)} -c {shlex.quote(code)}", CALL_TIMEOUT_S
        )
        if not r.ok:
            raise UserError(f"cannot run python on master {self.inv.master.name}: {r.stderr.strip()}")
        a, b = (int(x) for x in r.stdout.split())
        return c.master_port or a, c.redis_port or b

    def _prepare_host(self, host: Host) -> None:
        t = self.s.transport(host)
        d = self.run_dirs[host.name]
        r = t.run(f"mkdir -p {shlex.quote(d)}/out/../redis && cd {shlex.quote(d)} && pwd", CALL_TIMEOUT_S)
        if not r.ok:
            raise UserError(f"cannot create {d} on {host.name}: {r.stderr.strip()}")
        # Absolute from here on: relative work dirs mean the cwd (local) or home (ssh).
        self.run_dirs[host.name] = d = r.stdout.strip()
        t.write_text(f"{d}/password", self.password + "\n")
        trace = trace_text(self.cell)
        if trace:
            t.write_text(f"{d}/trace.txt", trace, mode=0o644)

    def _start_redis(self, port: int) -> str:
        from injector.control import ControlClient, ControlPlaneError
        from injector.redis_server import render_config

        master = self.inv.master
        t = self.s.transport(master)
        d = f"{self.run_dirs[master.name]}/redis"
        if not t.run("command -v redis-server && command -v redis-cli", CALL_TIMEOUT_S).ok:
            raise UserError(
                f"redis-server/redis-cli not found on master host {master.name}: install them "
                "(pmctl setup --install-redis, or apt install redis-server)"
            )
        t.write_text(f"{d}/redis.conf", render_config([master.address], port, self.password, d))
        self.redis = t.start("redis", "redis-server redis/redis.conf", {}, self.run_dirs[master.name], self.token)
        self._record(self.redis)
        url = f"redis://{master.address}:{port}"
        self.entry.control_url = url
        self.entry.secret_file = str(runs.write_secret(self.run_id, self.password))
        runs.save(self.entry)
        # Ready = it answers on the master itself (the password goes through the environment,
        # never argv); this machine may not reach the cluster network at all.
        ping = (
            f'REDISCLI_AUTH="$(cat {shlex.quote(self.run_dirs[master.name])}/password)" '
            f"redis-cli --no-auth-warning -h {shlex.quote(master.address)} -p {port} ping"
        )
        deadline = time.monotonic() + 15
        while t.run(ping, CALL_TIMEOUT_S).stdout.strip() != "PONG":
            if time.monotonic() > deadline or t.poll(self.redis) is not None:
                tail = t.run(f"tail -n 3 {shlex.quote(d)}/redis.log", CALL_TIMEOUT_S).stdout.strip()
                raise UserError(f"redis-server on {master.name}:{port} did not come up: {tail}")
            time.sleep(0.1)
        client = ControlClient(url, self.run_id, self.password)
        try:
            client.ping()
            self.control = client  # live progress from the heartbeats
        except ControlPlaneError:
            client.close()  # unreachable from here: the run goes on without live progress
        return url

    def _start_stages(self, master_port: int, url: str) -> None:
        def start(host: Host) -> ProcessHandle:
            try:
                d = self.run_dirs[host.name]
                cmd = stage_command(
                    self.inv, host, self.cell, d, master_port, url, self.run_id, self.opts.engine_entry
                )
                handle = self.s.transport(host).start(
                    "stage", cmd, stage_env(self.inv, host, d, master_port), d, self.token
                )
                # Recorded here, in the start's own thread: a start that outlives an
                # interrupt or the fan-out timeout is still stopped by the teardown.
                with self._starts:
                    self.stages[host.name] = handle
                    self._record(handle)
                return handle
            finally:
                with self._starts:
                    self._starts_in_flight -= 1
                    self._starts.notify_all()

        hosts = launch_hosts(self.inv)
        with self._starts:
            self._starts_in_flight = len(hosts)
        raise_first(fanout(hosts, start, CALL_TIMEOUT_S, name=lambda h: h.name), "starting the stages")

    def _wait_for_starts(self) -> None:
        """Lets the stage starts still running finish (and record themselves) first."""
        with self._starts:
            self._starts.wait_for(lambda: self._starts_in_flight == 0, timeout=2 * CALL_TIMEOUT_S)

    # -- follow -----------------------------------------------------------------------

    def _state(self, host: Host) -> tuple[int | None, bool]:
        t = self.s.transport(host)
        h = self.stages[host.name]
        rc = t.poll(h)
        if rc is not None:
            return rc, False
        if t.alive(h):
            return None, True
        return t.poll(h), False  # it may have finished between the two looks

    def _follow(self, progress: Progress | None) -> tuple[str, str, dict[str, int | None]]:
        deadline = time.monotonic() + self.opts.timeout_s
        hosts = launch_hosts(self.inv)
        while True:
            outcomes = fanout(hosts, self._state, CALL_TIMEOUT_S, name=lambda h: h.name)
            raise_first(outcomes, "checking the stages")
            states = {o.host: o.value for o in outcomes}
            codes = {name: rc for name, (rc, _alive) in states.items()}
            for host in hosts:
                rc, alive = states[host.name]
                what = self._what(host)
                if rc is not None and rc != 0:
                    return FAILED, f"{what} exited with {rc}{self._err_tail(host)}", codes
                if rc is None and not alive:
                    return FAILED, f"{what} died without an exit code (killed?)", codes
            if all(rc == 0 for rc in codes.values()):
                return DONE, "", codes
            if time.monotonic() > deadline:
                return FAILED, f"timeout after {self.opts.timeout_s:g} s", codes
            if progress is not None and self.control is not None:
                progress(self._heartbeats())
            time.sleep(self.opts.poll_s)

    def _what(self, host: Host) -> str:
        if single_agent(self.inv):
            return f"{self.inv.cluster.launcher} (stages 0-{self.inv.stages - 1}) on {host.name}"
        return f"stage {host.stage} on {host.name}"

    def _heartbeats(self) -> dict[int, dict[str, Any]]:
        from injector.control import ControlPlaneError

        try:
            return self.control.heartbeats()
        except ControlPlaneError:
            return {}  # progress display only; the exit codes decide the outcome

    def _err_tail(self, host: Host) -> str:
        h = self.stages[host.name]
        # The last line that says something (torchrun ends its report with a ==== rule).
        r = self.s.transport(host).run(
            f"grep -v '^[[:space:]=-]*$' {shlex.quote(h.err_path)} | tail -n 1", CALL_TIMEOUT_S
        )
        line = r.stdout.strip()
        return f": {line[:200]}" if line else ""

    # -- teardown ---------------------------------------------------------------------

    def _stop_all(self) -> None:
        grace = self.opts.grace_s

        def stop(host: Host) -> None:
            t = self.s.transport(host)
            if host.name in self.stages:
                t.stop(self.stages[host.name], grace)
            if self.redis is not None and host.name == self.redis.host:
                t.stop(self.redis, grace)

        def sweep(host: Host) -> None:
            self.s.transport(host).run(token_sweep_script(self.token, grace), grace + CALL_TIMEOUT_S)

        hosts = list(self.inv.hosts)
        self._note_failures(fanout(hosts, stop, grace + CALL_TIMEOUT_S, name=lambda h: h.name), "stop")
        # Only after every recorded group is stopped (a group is recognised by a member with
        # our token, which the sweep would take away): anything else of this cell, i.e.
        # unrecorded starts and workers that left our process groups.
        self._note_failures(fanout(hosts, sweep, grace + CALL_TIMEOUT_S, name=lambda h: h.name), "stop")

    def _collect_host(self, host: Host, dest: Path) -> None:
        t = self.s.transport(host)
        d = shlex.quote(self.run_dirs[host.name])
        remote_tar = f"{self.run_dirs[host.name]}/collect.tgz"
        handle = self.stages.get(host.name)
        # The stage's streams, by their names relative to the run dir (hosts without a
        # stage process, as with a single agent, only have op logs to give).
        streams = {}
        if handle is not None:
            streams = {
                "out": os.path.relpath(handle.out_path, self.run_dirs[host.name]),
                "err": os.path.relpath(handle.err_path, self.run_dirs[host.name]),
            }
        names = " ".join(shlex.quote(n) for n in ("out", *streams.values()))
        r = t.run(
            f"cd {d} && tar czf collect.tgz --ignore-failed-read {names} 2>/dev/null; test -f collect.tgz",
            CALL_TIMEOUT_S,
        )
        if not r.ok:
            return
        # Unpacked beside the destination: the moves below are then renames on one file
        # system (a tmpfs /tmp would make them fail with EXDEV).
        with tempfile.TemporaryDirectory(dir=dest, prefix=".collect-") as tmp:
            local = Path(tmp) / "c.tgz"
            t.get(remote_tar, str(local))
            x = Path(tmp) / "x"
            with tarfile.open(local) as tar:
                _extract_all(tar, x)
            for f in sorted(x.glob("out/*")):
                f.replace(dest / f.name)
            for stream, rel in streams.items():
                src = x / rel
                if src.exists():
                    src.replace(dest / f"{host.name}.std{stream}")

    def _remove_remote(self, host: Host) -> None:
        self.s.transport(host).run(runs.cleanup_cmd(self.run_dirs[host.name], self.run_id), CALL_TIMEOUT_S)

    # -- the whole cell -----------------------------------------------------------------

    def execute(self, staging: Staging, progress: Progress | None) -> CellOutcome:
        t0 = time.monotonic()
        started = _now()
        status, reason, codes = FAILED, "", {}
        follow_s = 0.0
        interrupted = False
        runs.save(self.entry)
        try:
            raise_first(fanout(list(self.inv.hosts), self._prepare_host, CALL_TIMEOUT_S, name=lambda h: h.name), "preparing the hosts")
            self.entry.remote_dirs = dict(self.run_dirs)
            master_port, redis_port = self._ports()
            url = self._start_redis(redis_port)
            f0 = time.monotonic()
            self._start_stages(master_port, url)
            status, reason, codes = self._follow(progress)
            follow_s = time.monotonic() - f0
        except KeyboardInterrupt:
            status, reason, interrupted = INTERRUPTED, "interrupted by the user", True
        except Exception as exc:  # recorded in cell.json; the run goes on with the next cell
            status, reason = FAILED, describe(exc)
        finally:
            # One shield over cleanup and recording: a second Ctrl-C waits until both are done.
            with self.s.shield():
                self._teardown(staging)
                outcome = self._finish(staging, status, reason, codes, started, time.monotonic() - t0, follow_s)
        if interrupted:
            raise CellInterrupted(outcome)
        if outcome.status == DONE:
            _render_timeline(outcome.folder)  # after the shield: Ctrl-C may cut it short
        return outcome

    def _finish(
        self, staging: Staging, status: str, reason: str, codes: dict[str, int | None],
        started: str, seconds: float, follow_s: float,
    ) -> CellOutcome:
        record = CellRecord(
            spec=self.cell.to_json(), status=status, run_id=self.run_id, started=started,
            ended=_now(), reason=reason, exit_codes=codes, hosts=self._host_facts(),
            versions=self.s.versions(), inventory=str(self.inv.path),
            launcher=self.inv.cluster.launcher,
        )
        if status == DONE:
            self._check_logs(staging.path, record)
        if self.cleanup_errors:
            # Something may still run or sit on a host: say so (pmctl stop retries).
            record.reason = "; ".join(filter(None, [record.reason, *self.cleanup_errors]))
        folder = staging.commit(record)
        reason = record.reason
        if folder != staging.final:
            reason += f" (the finished result stays; this attempt is in {folder})"
        if not self.cleanup_errors:
            runs.clear(self.entry)  # else kept, so `pmctl stop` (or the next run) retries
        return CellOutcome(self.cell, record.status, folder, seconds, reason, record.mean_ms, codes, follow_s)

    def _teardown(self, staging: Staging) -> None:
        """Stop, collect, remove: each step runs on every host even if another step failed
        there; failures are noted for cell.json instead of raised."""
        if self.control is not None:
            self.control.close()
        self._wait_for_starts()
        self._stop_all()
        hosts = list(self.inv.hosts)
        self._note_failures(
            fanout(hosts, lambda h: self._collect_host(h, staging.path), CALL_TIMEOUT_S, name=lambda h: h.name),
            "collect",
        )
        self._note_failures(fanout(hosts, self._remove_remote, CALL_TIMEOUT_S, name=lambda h: h.name), "cleanup")

    def _note_failures(self, outcomes: list, step: str) -> None:
        for o in outcomes:
            if not o.ok:
                self.cleanup_errors.append(f"{step} on {o.host}: {describe(o.error)}")

    def _check_logs(self, folder: Path, record: CellRecord) -> None:
        from engine.oplog import iteration_times_ms, read_records, summarize

        missing = [h.name for h in self.inv.hosts if not (folder / f"stage{h.stage}.jsonl").exists()]
        if missing:
            record.status, record.reason = FAILED, f"no op log from {', '.join(missing)}"
            return
        times = iteration_times_ms(read_records(folder))
        record.iteration_ms = {str(k): round(v, 3) for k, v in sorted(times.items())}
        if times:
            record.mean_ms = round(summarize(times).mean_ms, 3)

    def _host_facts(self) -> dict[str, dict[str, Any]]:
        out = {}
        for h in self.inv.hosts:
            out[h.name] = {"stage": h.stage, "address": h.address, "facts": self.s.facts(h)}
        return out


def _extract_all(tar: tarfile.TarFile, dest: Path) -> None:
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


def _render_timeline(folder: Path) -> None:
    """Draws the cell's ``timeline.png``; best effort, a cell is complete without it."""
    try:
        # Imported here: matplotlib must not slow down pmctl's start (``pmctl --help``).
        from figures.timeline import render_cell_timeline

        render_cell_timeline(folder)
    except Exception as exc:  # noqa: BLE001 - any drawing problem only costs the picture
        log.warning("no timeline for %s: %s", folder, exc)


def run_cell(session: Session, cell: Cell, opts: LaunchOptions, progress: Progress | None = None) -> CellOutcome:
    """Runs one cell into the results store; raises ``CellInterrupted`` (after cleanup and
    recording) when the user interrupts it."""
    staging = Staging(opts.results_root, cell)
    try:
        return _CellRun(session, cell, opts).execute(staging, progress)
    finally:
        staging.discard()  # no-op after a commit (the folder was renamed away)


__all__ = ["CellInterrupted", "CellOutcome", "LaunchOptions", "run_cell", "stage_command"]
