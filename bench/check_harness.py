"""The section harness of ``bench/gpu_check.py``: each section runs under its own time limit
(SIGALRM in the main thread), a failure is recorded in the report instead of ending the check,
and the commands a section starts never outlive it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.jsonio import write_json_atomic

Section = tuple[str, Callable[[Any], dict[str, Any]], float]  # name, function, seconds at most
STOP_GRACE_S = 30.0  # pmctl stops its stages on TERM; give it that long before the KILL


class SectionTimeout(Exception):
    """A section ran past its time."""


def free_port() -> int:
    """A TCP port free on the loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cmd(cmd: list[str], cwd: Path, env: dict[str, str], stdout: Path,
            stop: list[str] | None = None) -> int:
    """Runs ``cmd`` in its own session, its output in ``stdout`` and ``<stdout>.stderr``; when
    the section's alarm interrupts the wait, stops it (TERM, then KILL of its group), then runs
    ``stop`` (same cwd and env, output appended): what ``cmd`` started in sessions of its own
    (pmctl's stages and Redis) is out of reach of the group kill."""
    with open(stdout, "w") as out, open(stdout.with_suffix(".stderr"), "w") as err:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True)
        try:
            return p.wait()
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                if stop:
                    subprocess.run(stop, cwd=cwd, env=env, stdout=out, stderr=err,
                                   timeout=STOP_GRACE_S, check=False)


@contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raises ``SectionTimeout`` in the main thread after ``seconds``."""

    def ring(_sig: int, _frame: Any) -> None:
        raise SectionTimeout(f"ran past its {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_sections(sections: tuple[Section, ...], ctx: Any, deadline: float, out: Path,
                 report: dict[str, Any]) -> None:
    """Every section in turn, each within its own cap and the overall ``deadline``
    (``time.monotonic``); ``report`` is rewritten to ``out`` after each one."""
    for name, fn, cap in sections:
        left = min(cap, deadline - time.monotonic())
        t0 = time.monotonic()
        if left < 5:
            result: dict[str, Any] = {"ok": False, "error": "skipped: no time left in the budget"}
        else:
            try:
                with alarm(left):
                    result = fn(ctx)
            # A section's failure is the report's content, not the end of the check: record
            # it with its traceback and run the next section.
            except Exception as exc:  # noqa: BLE001
                result = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc()[-3000:]}
        result.setdefault("ok", True)
        result.setdefault("error", None)
        result["seconds"] = round(time.monotonic() - t0, 1)
        report["sections"][name] = result
        write_json_atomic(out, report)
        print(f"{name}: {'ok' if result['ok'] else 'FAILED'} ({result['seconds']} s)"
              + (f" {result['error']}"[:300] if result["error"] else ""), flush=True)
