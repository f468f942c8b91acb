"""Activation accounting: how many micro-batches' activations a stage holds in flight.

The accounting of the artifact (its simulator and the Megatron zero-bubble scheduler it ran):
an F adds one micro-batch; a full backward (BW) frees it; with split backward, B frees half
(what only the input gradient needed) and W the other half. An activation cap K means a
generator never issues an F that would take a stage above K (it needs at most K - 1 in flight
before it). Counts are kept in half units so the arithmetic is exact on integers.

Every cap uses this accounting: the generators, ``check_schedule_fits``, the ILP's constraint and
``ilp_cap`` (``inflight_peaks``). ``simulate.peak_activations`` is the other, stricter measure,
reported beside it and used by the memory estimate: micro-batches whose F has run and whose W has
not (B frees nothing there).
"""

from __future__ import annotations

from engine.planner.errors import PlanningError
from engine.planner.ir import Schedule
from engine.planner.replay import BW, B, F, Lowered, W, lower

# Change of the in-flight count, in half micro-batches, per kind code (F, B, W, BW).
HALVES = {F: 2, B: -1, W: -1, BW: -2}


def check_cap(cap: int | None) -> None:
    """Raises ``PlanningError`` unless ``cap`` is None or a whole number >= 1."""
    if cap is None:
        return
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise PlanningError(
            f"activation cap {cap!r}: must be a whole number >= 1 (a stage needs room for "
            "one micro-batch to run at all)"
        )


def f_fits(live_halves: int, cap: int | None) -> bool:
    """Whether a stage holding ``live_halves`` may issue one more F under ``cap``."""
    return cap is None or live_halves + HALVES[F] <= 2 * cap


def inflight_peaks(schedule: Schedule, lowered: Lowered | None = None) -> list[float]:
    """Per stage, the most micro-batches in flight (this module's accounting; x.5 possible)."""
    peaks = []
    for ks in (lowered if lowered is not None else lower(schedule))[0]:
        live = peak = 0
        for k in ks:
            live += HALVES[k]
            if live > peak:
                peak = live
        peaks.append(peak // 2 if peak % 2 == 0 else peak / 2)
    return peaks


def check_schedule_fits(schedule: Schedule, cap: int | None, what: str) -> None:
    """Raises ``PlanningError`` when a given (not generated) ``schedule`` breaks ``cap``."""
    if cap is None:
        return
    check_cap(cap)
    for s, peak in enumerate(inflight_peaks(schedule)):
        if peak > cap:
            raise PlanningError(
                f"{what}: stage {s} holds {peak:g} micro-batches in flight, over the activation "
                f"cap {cap} (raise the cap or reorder the stage)"
            )
