"""Parallel fan-out over hosts: one call per host in its own thread, a timeout on every call,
results per host, and the first failure named (Fabric's ThreadingGroup has no timeout).

The threads are daemons: a call stuck on a host that stopped answering is abandoned at its
timeout and never holds up pmctl's exit (a thread pool's workers are joined at exit)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pmctl.errors import UserError

T = TypeVar("T")
K = TypeVar("K")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one host's call produced."""

    host: str
    value: T | None = None
    error: BaseException | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class FanoutTimeout(TimeoutError):
    """A host's call did not return within the fan-out timeout."""


class _Call(Generic[K, T]):
    """``fn(item)`` running in a daemon thread; ``done`` is set when it returned or raised."""

    def __init__(self, item: K, fn: Callable[[K], T], label: str) -> None:
        self.value: T | None = None
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.done = threading.Event()
        self._item, self._fn = item, fn
        threading.Thread(target=self._run, name=f"fanout-{label}", daemon=True).start()

    def _run(self) -> None:
        t0 = time.monotonic()
        try:
            self.value = self._fn(self._item)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller: reported per host, raised by raise_first
            self.error = exc
        self.seconds = time.monotonic() - t0
        self.done.set()


def fanout(
    items: Sequence[K], fn: Callable[[K], T], timeout: float, name: Callable[[K], str] = str
) -> list[Outcome[T]]:
    """Runs ``fn(item)`` for every item in parallel; a call still running after ``timeout``
    seconds is reported as ``FanoutTimeout`` (its daemon thread is abandoned, not joined)."""
    started = time.monotonic()
    calls = [_Call(item, fn, name(item)) for item in items]
    out: list[Outcome[T]] = []
    for item, call in zip(items, calls):
        if not call.done.wait(max(0.0, timeout - (time.monotonic() - started))):
            out.append(Outcome(name(item), None, FanoutTimeout(f"no answer within {timeout:g} s"), timeout))
        else:
            out.append(Outcome(name(item), call.value, call.error, call.seconds))
    return out


def describe(exc: BaseException | None) -> str:
    """One line for a per-host error: a UserError's own line, else the type and message."""
    if exc is None:
        return ""
    if isinstance(exc, UserError):
        return exc.line()
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def raise_first(outcomes: Sequence[Outcome[T]], what: str) -> list[T]:
    """The values in order, or a ``UserError`` naming the first host that failed."""
    for o in outcomes:
        if not o.ok:
            err = o.error
            where = None if isinstance(err, UserError) else f"host {o.host}"
            raise UserError(f"{what} failed: {describe(err)}", where) from err
    return [o.value for o in outcomes]  # type: ignore[misc]
