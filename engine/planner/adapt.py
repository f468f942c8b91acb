"""PipeMorph's adaptation rule (PAPER.md 3): warm-up forwards per stage that absorb link delays.

    w_{S-1} = 1;   w_s = w_{s+1} + ceil(c_s / tF[s]) + 2

capped at N (the artifact loops forever there; here the cap is reported instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.planner.costs import StageCosts
from engine.planner.links import check_delays


@dataclass(frozen=True)
class WarmupPlan:
    """The adapted warm-up, the rule's uncapped values, and whether the cap at N bit."""

    warmup: list[int]
    uncapped: list[int]
    num_microbatches: int

    @property
    def capped(self) -> bool:
        return self.warmup != self.uncapped

    def warning(self) -> str | None:
        """One line for the user when the cap changed the rule's result, else None."""
        if not self.capped:
            return None
        return (
            f"warm-up {self.uncapped} exceeds N={self.num_microbatches} micro-batches; "
            f"capped to {self.warmup} (delays this large are not fully absorbed)"
        )


def plan_warmup(
    costs: StageCosts, delays: tuple[float, ...], num_microbatches: int
) -> WarmupPlan:
    """The adapted warm-up per stage for ``delays`` (one per link), with the cap reported."""
    S = costs.num_stages
    costs.check()
    check_delays(tuple(delays), S)
    uncapped = [1] * S
    for s in range(S - 2, -1, -1):
        uncapped[s] = uncapped[s + 1] + ceil_div(delays[s], costs.tf[s]) + 2
    capped = [min(w, num_microbatches) for w in uncapped]
    return WarmupPlan(capped, uncapped, num_microbatches)


def adapted_warmup(
    costs: StageCosts, delays: tuple[float, ...], num_microbatches: int
) -> list[int]:
    """The adapted warm-up per stage, capped at ``num_microbatches`` (see ``plan_warmup``)."""
    return plan_warmup(costs, delays, num_microbatches).warmup


def ceil_div(a: float, b: float) -> int:
    """ceil(a / b), exact on integers and robust to float rounding (0.3 / 0.1 -> 3)."""
    if isinstance(a, int) and isinstance(b, int):
        return -(-a // b)
    q = a / b
    r = round(q)
    return int(r) if abs(q - r) <= 1e-9 * max(1.0, abs(q)) else math.ceil(q)
