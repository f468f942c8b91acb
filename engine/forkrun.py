"""Starts one host's stage processes as ``torchrun`` with a static rendezvous would, but by
forking a Python that has already imported torch and the engine.

    python -m engine.forkrun --nnodes N --node-rank R --nproc-per-node P \\
        --master-addr A --master-port PORT -m engine.train [engine options]

With ``-m`` the module is imported once, here, and each stage calls its ``main(argv)``; a
script path instead runs as ``__main__`` in each stage.

Each stage then skips its own torch import (~2 s of CPU). On the embedded local cluster all
stages share a few cores, so one import instead of one per stage plus one for the torchrun
agent is most of a cell's start-up time. The children get torchrun's environment (RANK,
LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR/PORT: ``engine.rendezvous``,
the same as pmctl's direct launcher) and rank 0 hosts the rendezvous store, as with torchrun's
static rendezvous: rank = node rank x nproc-per-node + local rank.

Supervision follows torchrun: when a stage fails, the others are stopped (TERM, then KILL
after a grace period) and this process exits with the failed stage's status (128 + signal
for a stage killed by a signal). TERM, INT or HUP to this process stop every stage. A stage
also dies with this process if it is killed outright (Linux parent-death signal).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import os
import runpy
import signal
import sys
import time
import traceback
from collections.abc import Callable

from engine.rendezvous import Rendezvous

PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Signals are blocked in this process from the start (before any import can start a thread)
# and taken synchronously with sigtimedwait: no handler runs between a fork and the
# bookkeeping of its child, or between a reap and its record.
_WATCHED = frozenset((*_STOP_SIGNALS, signal.SIGCHLD))
_POLL_S = 0.5  # a safety net: children are also reaped on this period


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """torchrun's static-rendezvous options, plus the entry (``-m module`` or a script)."""
    p = argparse.ArgumentParser(
        prog="python -m engine.forkrun",
        description="Fork one host's stage processes from one import, as torchrun would start them.",
    )
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--node-rank", type=int, default=0)
    p.add_argument("--nproc-per-node", type=int, default=1)
    p.add_argument("--master-addr", default="127.0.0.1")
    p.add_argument("--master-port", type=int, required=True)
    p.add_argument("--grace", type=float, default=5.0, help="seconds between TERM and KILL")
    p.add_argument("-m", "--module", action="store_true", help="the entry is a module")
    p.add_argument("entry", help="module name (with -m) or script path")
    p.add_argument("entry_args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if args.nnodes < 1 or args.nproc_per_node < 1 or not 0 <= args.node_rank < args.nnodes:
        p.error("need nnodes >= 1, nproc-per-node >= 1 and 0 <= node-rank < nnodes")
    return args


def rendezvous(args: argparse.Namespace) -> Rendezvous:
    """The static rendezvous the options describe."""
    return Rendezvous(args.nnodes, args.nproc_per_node, args.master_addr, args.master_port)


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # no prctl: the launcher's process group still covers the stage
    if os.getppid() != parent:  # the launcher died before the request took effect
        os._exit(1)


def _run_stage(args: argparse.Namespace, entry_main: Callable[[list[str]], object] | None,
               local_rank: int, parent: int) -> None:
    """In the forked child: become one stage and never return. The signal dispositions are
    the launcher's own (it installs no handlers); only the mask is undone."""
    code = 1
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _WATCHED)
        _die_with_parent(parent)
        os.environ.update(rendezvous(args).worker_env(args.node_rank, local_rank))
        sys.argv = [args.entry, *args.entry_args]
        if entry_main is not None:
            entry_main(list(args.entry_args))
        else:
            runpy.run_path(args.entry, run_name="__main__")
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:  # sys.exit("message"), as the interpreter does it
            sys.stderr.write(f"{exc.code}\n")
            code = 1
    except BaseException:  # noqa: BLE001 - report it like an uncaught error, then exit
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _stop(children: dict[int, int], grace_s: float) -> None:
    """TERM the children still running, KILL those left after ``grace_s``; reaps them all.
    Further stop signals stay pending meanwhile: the stop is already under way."""
    for pid in children:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while True:
        _reap_finished(children)
        left = deadline - time.monotonic()
        if not children or left <= 0:
            break
        signal.sigtimedwait((signal.SIGCHLD,), min(left, _POLL_S))
    for pid in children:
        _signal(pid, signal.SIGKILL)
    while children:
        _reap_finished(children)
        if children:
            signal.sigtimedwait((signal.SIGCHLD,), _POLL_S)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap_finished(children: dict[int, int]) -> list[tuple[int, int]]:
    """Reaps every child that has ended: [(local rank, exit code as in subprocess)]."""
    done = []
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # none left to wait for
            children.clear()
            break
        if pid == 0:
            break
        if pid in children:
            done.append((children.pop(pid), os.waitstatus_to_exitcode(status)))
    return done


def _exit_status(code: int) -> int:
    return 128 - code if code < 0 else code


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # a real-time signal
        return f"signal {signum}"


def supervise(children: dict[int, int], grace_s: float, stop_signals: frozenset[int],
              first_rank: int = 0) -> int:
    """Waits for every stage; on the first failure, or a stop signal, stops the rest.
    Returns this launcher's exit status. ``first_rank``: the global rank of local rank 0."""
    while True:
        for local, code in _reap_finished(children):
            if code != 0:
                if code < 0:  # the stage said nothing itself
                    sys.stderr.write(f"forkrun: local rank {local} (rank {first_rank + local}) "
                                     f"was killed by {_signal_name(-code)}\n")
                    sys.stderr.flush()
                _stop(children, grace_s)
                return _exit_status(code)
        if not children:
            return 0
        info = signal.sigtimedwait(_WATCHED, _POLL_S)
        if info is not None and info.si_signo in stop_signals:
            _stop(children, grace_s)
            return 128 + info.si_signo


def main(argv: list[str] | None = None) -> int:
    """Preloads the entry module, forks the stages, supervises them."""
    # A stop signal the launcher was started ignoring (nohup, a background job) stays ignored.
    stop_signals = frozenset(s for s in _STOP_SIGNALS if signal.getsignal(s) != signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
    args = parse_args(argv)
    entry_main = None
    if args.module:
        entry_main = getattr(importlib.import_module(args.entry), "main", None)
        if not callable(entry_main):
            sys.stderr.write(f"forkrun: module {args.entry} has no main(argv)\n")
            return 2
    parent = os.getpid()
    children: dict[int, int] = {}
    try:
        for local_rank in range(args.nproc_per_node):
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _run_stage(args, entry_main, local_rank, parent)
            children[pid] = local_rank
    except BaseException:
        _stop(children, args.grace)  # a failed fork: none of the stages may stay
        raise
    return supervise(children, args.grace, stop_signals, rendezvous(args).rank(args.node_rank, 0))


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skips interpreter teardown, which with torch loaded takes a second or more of CPU.
    os._exit(status)
