"""Per-stage op costs and per-link delays: the planner's inputs (any time unit, usually ms)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.planner.errors import PlanningError
from engine.planner.links import parse_number


@dataclass(frozen=True)
class StageCosts:
    """Costs of F, B and W per stage (1F1B's full backward costs ``tb + tw``)."""

    tf: tuple[float, ...]
    tb: tuple[float, ...]
    tw: tuple[float, ...]

    @property
    def num_stages(self) -> int:
        return len(self.tf)

    @classmethod
    def uniform(cls, num_stages: int, tf: float, tb: float, tw: float) -> StageCosts:
        """The same costs on every stage."""
        return cls((tf,) * num_stages, (tb,) * num_stages, (tw,) * num_stages)

    def slowed(self, factors: tuple[float, ...]) -> StageCosts:
        """Compute stragglers: every op of stage s takes its cost times ``factors[s]`` (each
        stage its own factor; the artifact's simulator wrongly used the first one for all)."""
        if len(factors) != self.num_stages:
            raise PlanningError(
                f"slow-stage factors: got {len(factors)} for {self.num_stages} stages"
            )

        def scale(values: tuple[float, ...]) -> tuple[float, ...]:
            # Keep integer costs integers where the factor leaves them whole (exact times).
            out = []
            for v, f in zip(values, factors):
                x = v * f
                out.append(int(x) if isinstance(v, int) and float(x).is_integer() else x)
            return tuple(out)

        return StageCosts(scale(self.tf), scale(self.tb), scale(self.tw))

    def to_json(self) -> dict[str, list[float]]:
        return {"tf": list(self.tf), "tb": list(self.tb), "tw": list(self.tw)}

    def check(self, num_stages: int | None = None) -> None:
        """Raises ``PlanningError`` unless every cost is finite and > 0, one per stage."""
        expected = self.num_stages if num_stages is None else num_stages
        for name, values in (("tf", self.tf), ("tb", self.tb), ("tw", self.tw)):
            if len(values) != expected:
                raise PlanningError(
                    f"{name}: got {len(values)} values for {expected} stages (give one per stage)"
                )
            for s, v in enumerate(values):
                if not (v > 0 and math.isfinite(v)):
                    raise PlanningError(f"{name} of stage {s}: {v!r} must be finite and > 0")


def parse_stage_values(text: str, num_stages: int, what: str) -> tuple[float, ...]:
    """``"10"`` -> the value on every stage; ``"10,12,9,11"`` -> one value per stage."""
    parts = [p.strip() for p in text.split(",")]
    values = tuple(parse_number(p, what) for p in parts)
    if len(values) == 1:
        return values * num_stages
    if len(values) != num_stages:
        raise PlanningError(
            f"{what}: got {len(values)} values for {num_stages} stages "
            "(give one number, or one per stage separated by commas)"
        )
    return values


def parse_costs(tf: str, tb: str, tw: str, num_stages: int) -> StageCosts:
    """Costs from the CLI's ``--tf/--tb/--tw`` texts, checked (> 0, one per stage)."""
    costs = StageCosts(
        parse_stage_values(tf, num_stages, "--tf"),
        parse_stage_values(tb, num_stages, "--tb"),
        parse_stage_values(tw, num_stages, "--tw"),
    )
    costs.check(num_stages)
    return costs


def parse_slow_stages(specs: list[str], num_stages: int) -> tuple[float, ...]:
    """``["2=1.5", "0=2"]`` -> one compute factor per stage (1 where none is given).

    Raises ``PlanningError`` for a malformed spec, a stage outside 0..S-1, a stage given
    twice, or a factor that is not finite and > 0.
    """
    factors: list[float] = [1] * num_stages
    seen: set[int] = set()
    for spec in specs:
        stage_text, eq, factor_text = spec.partition("=")
        where = f"--slow-stage {spec!r}"
        if not eq:
            raise PlanningError(f"{where}: expected STAGE=FACTOR, e.g. 2=1.5")
        try:
            stage = int(stage_text.strip())
        except ValueError:
            raise PlanningError(f"{where}: stage {stage_text!r} is not a whole number") from None
        if not 0 <= stage < num_stages:
            raise PlanningError(f"{where}: stage {stage} is outside 0..{num_stages - 1}")
        if stage in seen:
            raise PlanningError(f"{where}: stage {stage} is given twice")
        factor = parse_number(factor_text.strip(), where)
        if not factor > 0:
            raise PlanningError(f"{where}: the factor must be > 0 (1.5 = 50% slower)")
        seen.add(stage)
        factors[stage] = factor
    return tuple(factors)
