"""Random planning instances as PAPER.md 3 draws them for Fig 19 (seeded, integer costs).

Costs: every stage's tF, tB and tW drawn independently from the integers in [b, 2b) (the
per-stage noise makes stages unequal); delays c ~ U(0, 20), integers, on every link.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.planner.costs import StageCosts


@dataclass(frozen=True)
class Instance:
    """One planning problem: shape, costs and the link delays to plan for."""

    num_stages: int
    num_microbatches: int
    costs: StageCosts
    delays: tuple[float, ...]


def random_instance(
    num_stages: int,
    num_microbatches: int,
    granularity: int,
    rng: random.Random,
    max_delay: int = 20,
) -> Instance:
    """Draws one instance with cost granularity ``b`` (integer costs in [b, 2b))."""
    def per_stage() -> tuple[float, ...]:
        return tuple(rng.randrange(granularity, 2 * granularity) for _ in range(num_stages))

    costs = StageCosts(per_stage(), per_stage(), per_stage())
    delays = tuple(rng.randint(0, max_delay) for _ in range(num_stages - 1))
    return Instance(num_stages, num_microbatches, costs, delays)
