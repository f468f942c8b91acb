"""How fast a run's plan followed each change of the injected fault, from its iteration records.

A change is a trace epoch (``fault.injected.epoch``, 1, 2, ...) first in force at iteration
i0. It is re-planned at the first iteration j >= i0, still under that epoch, whose plan was
made for exactly the delays in force: ``fault.planned_for_ms`` equals ``link_delays_ms``
(within 0.05 ms, the logs' rounding); a healthy snapshot is matched by the healthy plan. The
lag is j - i0 (None: the next change, or the end of the run, came first). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.oplog import IterationRecord
from figures.run_series import RunSeries

TOLERANCE_MS = 0.05


@dataclass(frozen=True)
class Change:
    """One change of the fault as the run saw it."""

    epoch: int
    at_s: float | None  # its trace time (a time-based trace), else None
    link_delays_ms: tuple[float | None, ...]  # in force (None: a link that is down)
    seen_at: int  # the first iteration it was in force
    replanned_at: int | None  # the first iteration planned for it

    @property
    def lag(self) -> int | None:
        return None if self.replanned_at is None else self.replanned_at - self.seen_at

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "at_s": self.at_s, "link_delays_ms": list(self.link_delays_ms),
                "seen_at_iteration": self.seen_at, "replanned_at_iteration": self.replanned_at,
                "lag_iterations": self.lag}


def _injected(head: IterationRecord) -> dict[str, Any]:
    fault = head.fault if isinstance(head.fault, dict) else {}
    injected = fault.get("injected")
    return injected if isinstance(injected, dict) else {}


def planned_for(head: IterationRecord) -> bool:
    """Whether ``head``'s plan was made for the delays in force at it."""
    injected = head.link_delays_ms
    planned = head.fault.get("planned_for_ms") if isinstance(head.fault, dict) else None
    if all(d == 0 for d in injected):
        return planned is None or all(p == 0 for p in planned)
    if planned is None or len(planned) != len(injected) or any(d is None for d in injected):
        return False
    return all(abs(p - d) <= TOLERANCE_MS for p, d in zip(planned, injected))


def replan_changes(series: RunSeries) -> list[Change]:
    """Every change (epoch >= 1) the run's iteration records show, in order, with when its
    plan followed."""
    out: list[Change] = []
    pending: dict[str, Any] | None = None
    for it in sorted(series.heads):
        head = series.heads[it]
        inj = _injected(head)
        epoch = int(inj.get("epoch") or 0)
        if epoch == 0:
            continue
        if pending is None or pending["epoch"] != epoch:
            if pending is not None:
                out.append(Change(**pending))
            pending = {"epoch": epoch, "at_s": inj.get("at_s"), "link_delays_ms": tuple(head.link_delays_ms),
                       "seen_at": it, "replanned_at": None}
        if pending["replanned_at"] is None and planned_for(head):
            pending["replanned_at"] = it
    if pending is not None:
        out.append(Change(**pending))
    return out
