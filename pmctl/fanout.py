"""Parallel fan-out over hosts: one call per host in a thread pool, a timeout on every call,
results per host, and the first failure named (Fabric's ThreadingGroup has no timeout)."""

from __future__ import annotations

import concurrent.futures as cf
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


def fanout(
    items: Sequence[K], fn: Callable[[K], T], timeout: float, name: Callable[[K], str] = str
) -> list[Outcome[T]]:
    """Runs ``fn(item)`` for every item in parallel; a call still running after ``timeout``
    seconds is reported as ``FanoutTimeout`` (its thread is abandoned, not joined)."""
    if not items:
        return []
    pool = cf.ThreadPoolExecutor(max_workers=min(32, len(items)), thread_name_prefix="fanout")
    started = time.monotonic()

    def timed(item: K) -> tuple[T, float]:
        t0 = time.monotonic()
        return fn(item), time.monotonic() - t0

    futures = [pool.submit(timed, item) for item in items]
    out: list[Outcome[T]] = []
    for item, fut in zip(items, futures):
        left = max(0.0, timeout - (time.monotonic() - started))
        try:
            value, secs = fut.result(timeout=left)
            out.append(Outcome(name(item), value, None, secs))
        except cf.TimeoutError:
            out.append(Outcome(name(item), None, FanoutTimeout(f"no answer within {timeout:g} s"), timeout))
        except Exception as exc:  # noqa: BLE001 - reported per host, raised by raise_first
            out.append(Outcome(name(item), None, exc, time.monotonic() - started))
    pool.shutdown(wait=False, cancel_futures=True)
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
