"""Per-stage op costs and per-link delays: the planner's inputs (any time unit, usually ms)."""

from __future__ import annotations

from dataclasses import dataclass


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

    def to_json(self) -> dict[str, list[float]]:
        return {"tf": list(self.tf), "tb": list(self.tb), "tw": list(self.tw)}
