"""Per-link delays from ``a_b=MS`` strings: link ``a_b`` joins adjacent stages a and b=a+1.

The link and the delay are read by ``injector.links`` (the one link and delay parser), so
``--delay`` says what ``--links``/``--delay`` say elsewhere: ``2_3``, ``3_2`` or ``2-3``;
milliseconds by default (``20``), or ``20ms``/``0.02s``. The planner has no crashed links:
``inf`` is refused.
"""

from __future__ import annotations

import math

from engine.planner.errors import PlanningError
from injector.links import LinkError, parse_delay, parse_link


def parse_number(text: str, what: str) -> float:
    """Parses ``10`` as an int and ``10.5`` as a float (integer inputs keep integer times)."""
    try:
        value: float = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise PlanningError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise PlanningError(f"{what}: {text!r} must be finite")
    return value


def parse_link_delays(specs: list[str], num_stages: int) -> tuple[float, ...]:
    """Turns ``["0_1=10", "2_3=20"]`` into one delay per link (length ``num_stages - 1``).

    Links not named are healthy (0). Raises ``PlanningError`` for a malformed spec, a link
    between non-adjacent or non-existent stages, a negative delay or a link given twice.
    """
    delays: list[float] = [0] * max(num_stages - 1, 0)
    seen: set[int] = set()
    for spec in specs:
        link_text, eq, delay_text = spec.partition("=")
        if not eq:
            raise PlanningError(f"delay {spec!r}: expected a_b=MS, e.g. 0_1=10")
        try:
            a, b = parse_link(link_text, num_stages)
            delay_s = parse_delay(delay_text, default_unit="ms")
        except LinkError as exc:
            raise PlanningError(f"delay {spec!r}: {exc}") from None
        if a in seen:
            raise PlanningError(f"delay {spec!r}: link {a}_{b} is given twice")
        if math.isinf(delay_s):
            raise PlanningError(f"delay {spec!r}: a delay must be finite (the planner has no crashed links)")
        seen.add(a)
        delays[a] = _milliseconds(delay_s)
    return tuple(delays)


def _milliseconds(delay_s: float) -> float:
    """Seconds back to the planner's milliseconds, an int when whole (integer inputs keep
    integer times); rounded to 1e-9 ms so ``1.5`` stays 1.5 after the trip through seconds."""
    ms = round(delay_s * 1e3, 9)
    return int(ms) if ms.is_integer() else ms


def check_delays(delays: tuple[float, ...], num_stages: int) -> None:
    """Raises ``PlanningError`` unless there is one finite, non-negative delay per link."""
    if len(delays) != max(num_stages - 1, 0):
        raise PlanningError(
            f"delays: got {len(delays)} values for {num_stages} stages "
            f"(need one per link: {max(num_stages - 1, 0)})"
        )
    for i, c in enumerate(delays):
        if not (c >= 0 and math.isfinite(c)):
            raise PlanningError(f"delay on link {i}_{i + 1}: {c!r} must be finite and >= 0")
