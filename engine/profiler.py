"""Profiling: per-stage median op durations over healthy iterations, agreed by all ranks.

PipeMorph re-plans with these costs. The first iteration (allocations, warm caches) is left
out once a later healthy iteration exists. 1F1B's full backward is reported as ``tb`` with
``tw = 0`` (StageCosts' convention: a full backward costs ``tb + tw``).
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import torch
import torch.distributed as dist

from engine.planner.costs import StageCosts


class Profiler:
    """Collects this stage's op durations and agrees the per-stage medians."""

    def __init__(self) -> None:
        self._by_iter: dict[int, dict[str, list[float]]] = {}

    def record_iteration(self, iteration: int, durations: dict[str, list[float]]) -> None:
        """Keeps the op durations (ms, by op kind) of a healthy iteration."""
        self._by_iter[iteration] = durations

    def local_medians(self) -> tuple[float, float, float]:
        """This stage's (tF, tB, tW) medians; NaN when nothing was recorded yet."""
        its = sorted(self._by_iter)
        if len(its) > 1:
            its = its[1:]
        pooled: dict[str, list[float]] = defaultdict(list)
        for it in its:
            for kind, vals in self._by_iter[it].items():
                pooled[kind].extend(vals)

        def med(kind: str) -> float:
            return statistics.median(pooled[kind]) if pooled[kind] else float("nan")

        if pooled["BW"] and not pooled["B"]:
            return med("F"), med("BW"), 0.0
        return med("F"), med("B"), med("W")

    @staticmethod
    def agree(local: tuple[float, ...], world: int) -> list[tuple[float, ...]]:
        """All-gathers one float tuple per rank (collective on the default group)."""
        mine = torch.tensor(local, dtype=torch.float64)
        parts = [torch.zeros_like(mine) for _ in range(world)]
        dist.all_gather(parts, mine)
        return [tuple(p.tolist()) for p in parts]


def costs_from(rows: list[tuple[float, ...]]) -> StageCosts | None:
    """StageCosts from per-rank (tF, tB, tW, ...) rows; None while any is unknown."""
    if any(r[0] != r[0] for r in rows):  # NaN: no healthy iteration yet
        return None
    return StageCosts(tuple(r[0] for r in rows), tuple(r[1] for r in rows),
                      tuple(r[2] for r in rows))
