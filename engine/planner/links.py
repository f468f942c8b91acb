"""Per-link delays from ``a_b=MS`` strings: link ``a_b`` joins adjacent stages a and b=a+1."""

from __future__ import annotations

import math
import re

from engine.planner.errors import PlanningError
from injector.trace import TraceError, parse_link

_SPEC_RE = re.compile(r"^\s*(\d+)_(\d+)\s*=\s*(\S+)\s*$")


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
        m = _SPEC_RE.match(spec)
        if not m:
            raise PlanningError(f"delay {spec!r}: expected a_b=MS, e.g. 0_1=10")
        try:
            a, b = parse_link(f"{m.group(1)}_{m.group(2)}", num_stages)
        except TraceError as exc:
            raise PlanningError(f"delay {spec!r}: {exc}") from None
        if a in seen:
            raise PlanningError(f"delay {spec!r}: link {a}_{b} is given twice")
        value = parse_number(m.group(3), f"delay {spec!r}")
        if value < 0:
            raise PlanningError(f"delay {spec!r}: a delay must be >= 0")
        seen.add(a)
        delays[a] = value
    return tuple(delays)


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
