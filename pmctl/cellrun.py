"""One cell in flight: prepare the hosts, Redis on the master, start the stage processes the
launcher asks for (``pmctl.launchers``), follow them live under the timeout, then whatever
happened stop everything started (process groups TERM then KILL, Redis, a token sweep),
collect the logs, remove the run dirs (``pmctl.cellstop``) and record the cell. Every start is recorded in the run
ledger as soon as it returns, so ``pmctl stop`` can clean up after a pmctl killed outright.
"""

from __future__ import annotations

import os
import secrets
import shlex
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from figures.store import DONE, FAILED, INTERRUPTED, Staging
from injector.redis_server import generate_password
from pmctl import runs
from pmctl.cellrecord import now, record_cell, render_timeline
from pmctl.cellstop import CALL_TIMEOUT_S, Footprint, Teardown, teardown
from pmctl.controlplane import ControlPlane, control_env, free_ports, push_tls, run_tls, start_redis
from pmctl.errors import UserError
from pmctl.fanout import describe, fanout, raise_first
from pmctl.inventory import Host
from pmctl.launchers import (
    ENGINE_ENTRY,
    StageProcess,
    engine_argv,
    launcher_of,
    rendezvous,
    stage_command,
    stage_env,
)
from pmctl.launchers import describe as describe_process
from pmctl.session import Session
from pmctl.transport.base import ProcessHandle


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

    cell: Any  # the cell's spec (figures.cells.Cell)
    status: str  # done | failed | interrupted | skipped | not_run (pmctl.experiment)
    folder: Path
    seconds: float = 0.0
    reason: str = ""
    mean_ms: float | None = None
    exit_codes: dict[str, int | None] = field(default_factory=dict)  # process label -> code
    follow_seconds: float = 0.0  # from the first stage start to the last stage exit


Progress = Callable[[dict[int, dict[str, Any]]], None]  # stage -> latest heartbeat


class CellInterrupted(KeyboardInterrupt):
    """Raised after an interrupted cell was cleaned up and recorded."""


def _run_id(cell: Any) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{cell.figure}-{cell.method}")
    return f"{safe}-{uuid.uuid4().hex[:8]}"


class CellRun:
    """State of one cell in flight; ``execute`` always ends with everything stopped."""

    def __init__(self, session: Session, cell: Any, opts: LaunchOptions) -> None:
        self.s = session
        self.inv = session.inventory
        self.cell = cell
        self.opts = opts
        self.launcher = launcher_of(self.inv)
        self.procs = self.launcher.processes(self.inv)
        self.run_id = _run_id(cell)
        self.token = secrets.token_hex(8)
        self.run_dirs = {h.name: f"{h.work_dir}/runs/{self.run_id}" for h in self.inv.hosts}
        self.login_dirs: dict[str, str] = {}  # where each host's commands start
        self.started: dict[str, ProcessHandle] = {}  # process label -> its group
        self.redis: ProcessHandle | None = None  # set as soon as it exists
        self.plane: ControlPlane | None = None  # once it answers
        self.password = generate_password()
        self.tls = run_tls(self.inv.master, self.run_id)  # None: the control plane stays on loopback
        self.entry = runs.RunEntry(
            run_id=self.run_id, pmctl_pid=os.getpid(), inventory=str(self.inv.path),
            cell=cell.to_json(), started=now(), remote_dirs=dict(self.run_dirs),
            pmctl_start=runs.process_start(os.getpid()), token=self.token,
        )
        self.cleanup_errors: list[str] = []
        self.torn = Teardown()  # what the teardown left (pmctl.cellstop)
        self._lock = threading.Condition()
        self._starts_in_flight = 0

    def _hosts_starting(self) -> list[Host]:
        """The hosts that start stage processes, in order."""
        return list({p.host.name: p.host for p in self.procs}.values())

    def _procs_on(self, host: Host) -> list[StageProcess]:
        return [p for p in self.procs if p.host.name == host.name]

    def _fan(self, hosts: list[Host], fn: Callable[[Host], Any], timeout: float = CALL_TIMEOUT_S) -> list:
        return fanout(hosts, fn, timeout, name=lambda h: h.name)

    # -- setup ------------------------------------------------------------------------

    def _record(self, handle: ProcessHandle) -> None:
        with self._lock:
            self.entry.processes.append(handle)
            runs.save(self.entry)

    def _ports(self) -> tuple[int, int]:
        c = self.inv.cluster
        if c.master_port and c.redis_port:
            return c.master_port, c.redis_port
        a, b = free_ports(self.s.transport(self.inv.master), self.inv.master.python, self.inv.master.name)
        return c.master_port or a, c.redis_port or b

    def _prepare_host(self, host: Host) -> None:
        t = self.s.transport(host)
        d = self.run_dirs[host.name]
        r = t.run(f"pwd && mkdir -p {shlex.quote(d)}/out/../redis && cd {shlex.quote(d)} && pwd", CALL_TIMEOUT_S)
        if not r.ok:
            raise UserError(f"cannot create {d} on {host.name}: {r.stderr.strip()}")
        # Absolute from here on: relative paths (work dir, python) mean the cwd (local) or home (ssh).
        self.login_dirs[host.name], self.run_dirs[host.name] = r.stdout.splitlines()[:2]
        d = self.run_dirs[host.name]
        t.write_text(f"{d}/password", self.password + "\n")
        push_tls(t, d, self.tls, host.name == self.inv.master.name)
        if self.cell.trace_text:
            t.write_text(f"{d}/trace.txt", self.cell.trace_text, mode=0o644)

    def _start_redis(self, port: int) -> str:
        master = self.inv.master

        def record(handle: ProcessHandle, url: str) -> None:
            self.redis = handle
            self._record(handle)
            self.entry.control_url = url
            self.entry.secret_file = str(runs.write_secret(self.run_id, self.password))
            runs.save(self.entry)

        self.plane = start_redis(
            self.s.transport(master), master, self.run_dirs[master.name], port, self.password,
            self.token, self.run_id, record, tls=self.tls,
        )
        return self.plane.url

    def _start_stages(self, master_port: int, url: str) -> None:
        rdzv = rendezvous(self.inv, master_port)

        def start(host: Host) -> None:
            try:
                d = self.run_dirs[host.name]
                argv = engine_argv(self.cell, d, url, self.run_id, self.opts.engine_entry)
                t = self.s.transport(host)
                for proc in self._procs_on(host):
                    handle = t.start(proc.name, stage_command(self.inv, proc, rdzv, argv, self.login_dirs[host.name]),
                                     {**stage_env(self.inv, proc, rdzv, d), **control_env(d, self.tls)}, d, self.token)
                    # Recorded here, in the start's own thread: a start that outlives an
                    # interrupt or the fan-out timeout is still stopped by the teardown.
                    with self._lock:
                        self.started[proc.label] = handle
                    self._record(handle)
            finally:
                with self._lock:
                    self._starts_in_flight -= 1
                    self._lock.notify_all()

        hosts = self._hosts_starting()
        with self._lock:
            self._starts_in_flight = len(hosts)
        raise_first(self._fan(hosts, start), "starting the stages")

    def _wait_for_starts(self) -> None:
        """Lets the stage starts still running finish (and record themselves) first."""
        with self._lock:
            self._lock.wait_for(lambda: self._starts_in_flight == 0, timeout=2 * CALL_TIMEOUT_S)

    # -- follow -----------------------------------------------------------------------

    def _states(self, host: Host) -> dict[str, tuple[int | None, bool]]:
        """(exit code or None, alive) of each process started on ``host``."""
        t = self.s.transport(host)
        out = {}
        for proc in self._procs_on(host):
            h = self.started[proc.label]
            rc = t.poll(h)
            if rc is None and not t.alive(h):
                rc = t.poll(h)  # it may have finished between the two looks
                out[proc.label] = (rc, False)
            else:
                out[proc.label] = (rc, rc is None)
        return out

    def _follow(self, progress: Progress | None) -> tuple[str, str, dict[str, int | None]]:
        deadline = time.monotonic() + self.opts.timeout_s
        hosts = self._hosts_starting()
        while True:
            states: dict[str, tuple[int | None, bool]] = {}
            for part in raise_first(self._fan(hosts, self._states), "checking the stages"):
                states.update(part)
            codes = {p.label: states[p.label][0] for p in self.procs}
            for proc in self.procs:
                rc, alive = states[proc.label]
                what = describe_process(self.launcher.name, proc)
                if rc is not None and rc != 0:
                    return FAILED, f"{what} exited with {rc}{self._err_tail(proc)}", codes
                if rc is None and not alive:
                    return FAILED, f"{what} died without an exit code (killed?)", codes
            if all(rc == 0 for rc in codes.values()):
                return DONE, "", codes
            if time.monotonic() > deadline:
                return FAILED, f"timeout after {self.opts.timeout_s:g} s", codes
            if progress is not None and self.plane is not None and self.plane.client is not None:
                progress(self.plane.heartbeats())
            time.sleep(self.opts.poll_s)

    def _err_tail(self, proc: StageProcess) -> str:
        h = self.started[proc.label]
        # The last line that says something (torchrun ends its report with a ==== rule).
        r = self.s.transport(proc.host).run(
            f"grep -v '^[[:space:]=-]*$' {shlex.quote(h.err_path)} | tail -n 1", CALL_TIMEOUT_S
        )
        line = r.stdout.strip()
        return f": {line[:200]}" if line else ""

    # -- teardown (pmctl.cellstop) -------------------------------------------------------

    def _teardown(self, staging: Staging) -> None:
        """Stop, collect, remove on every host; failures are noted for cell.json, not raised."""
        if self.plane is not None:
            self.plane.close()
        self._wait_for_starts()
        footprint = Footprint(self.run_id, self.token, self.run_dirs, self.procs, self.started, self.redis)
        self.torn = teardown(self.s, list(self.inv.hosts), footprint, self.opts.grace_s, staging.path, self.entry)
        self.cleanup_errors += self.torn.notes

    # -- the whole cell -----------------------------------------------------------------

    def execute(self, staging: Staging, progress: Progress | None) -> CellOutcome:
        t0 = time.monotonic()
        started = now()
        status, reason, codes = FAILED, "", {}
        follow_s = 0.0
        interrupted = False
        runs.save(self.entry)
        try:
            raise_first(self._fan(list(self.inv.hosts), self._prepare_host), "preparing the hosts")
            self.entry.remote_dirs = dict(self.run_dirs)
            master_port, redis_port = self._ports()
            url = self._start_redis(redis_port)
            f0 = time.monotonic()
            self._start_stages(master_port, url)
            status, reason, codes = self._follow(progress)
            follow_s = time.monotonic() - f0
        except KeyboardInterrupt:
            status, reason, interrupted = INTERRUPTED, self.s.interrupt_reason(), True
        except Exception as exc:  # noqa: BLE001 - recorded in cell.json; the run goes on with the next cell
            status, reason = FAILED, describe(exc)
        finally:
            # One shield over cleanup and recording: a second Ctrl-C waits until both are done.
            with self.s.shield():
                self._teardown(staging)
                outcome = self._finish(staging, status, reason, codes, started, time.monotonic() - t0, follow_s)
        if interrupted:
            raise CellInterrupted(outcome)
        if outcome.status == DONE:
            render_timeline(outcome.folder)  # after the shield: Ctrl-C may cut it short
        return outcome

    def _finish(
        self, staging: Staging, status: str, reason: str, codes: dict[str, int | None],
        started: str, seconds: float, follow_s: float,
    ) -> CellOutcome:
        # Whatever the recording meets, the logs are kept and the run goes on (pmctl.cellrecord).
        rec = record_cell(self.s, self.cell, self.run_id, staging, status, reason, codes, started, self.torn)
        if not self.cleanup_errors:
            runs.clear(self.entry)  # else kept, so `pmctl stop` (or the next run) retries
        record = rec.record
        return CellOutcome(self.cell, record.status, rec.folder, seconds, rec.reason, record.mean_ms, codes, follow_s)
