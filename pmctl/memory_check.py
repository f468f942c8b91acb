"""Before a CUDA run: every cell's stages must fit the GPUs they share, by the engine's own
estimate (``engine.memory_estimate``) against the GPU sizes ``pmctl setup`` recorded in each
host's fact sheet (``gpu_memory``). A host without that fact (never set up, or set up by an
older pmctl) is not checked here; its stages still check themselves before they build their
model. No torch: the controller computes the estimate from the preset alone."""

from __future__ import annotations

from collections.abc import Iterable

from engine.cellspec import CellSpec
from engine.memory_estimate import estimate_cell, gpu_groups, over_budget
from figures.cells import cell_label
from pmctl.errors import UserError
from pmctl.inventory import Host
from pmctl.launchers import one_machine
from pmctl.session import Session


def _nodes(session: Session) -> list[tuple[Host, range]]:
    """Each machine and the global stages it runs, in local-rank order: the local cluster is
    one machine running every stage (its fact sheet: the master's)."""
    inv = session.inventory
    if one_machine(inv):
        return [(inv.master, range(inv.stages))]
    return [(h, h.stage_range) for h in inv.hosts]


def _gpu_sizes(facts: dict) -> list[int]:
    sizes = facts.get("gpu_memory")
    if not isinstance(sizes, list) or not all(isinstance(n, int) and n > 0 for n in sizes):
        return []
    return sizes


def check_gpu_memory(session: Session, cells: Iterable[CellSpec]) -> None:
    """Raises ``UserError`` (one line) for the first cell whose stages sharing a GPU would
    need more memory than it has; does nothing on a CPU cluster."""
    if session.inventory.cluster.device != "cuda":
        return
    nodes = [(host, stages, _gpu_sizes(session.facts(host))) for host, stages in _nodes(session)]
    seen: set[tuple] = set()
    for cell in cells:
        # the estimate depends on these fields only: check each shape once
        key = (cell.preset, cell.stages, cell.microbatches, cell.method, cell.healthy)
        if key in seen:
            continue
        seen.add(key)
        estimates = estimate_cell(cell)
        for host, stages, sizes in nodes:
            if not sizes:
                continue
            for d, ranks in enumerate(gpu_groups(len(stages), len(sizes))):
                problem = over_budget([estimates[stages[r]] for r in ranks], sizes[d], f"GPU {d}")
                if problem:
                    raise UserError(
                        problem, f"cell {cell_label(cell)} on host {host.name}",
                        "use more stages or GPUs (--stages, the inventory), fewer micro-batches "
                        "(--microbatches) or a smaller preset (--preset)")
