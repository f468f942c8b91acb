"""torchrun's static rendezvous as data: which rank each worker gets and the environment it
starts with. The one copy of that environment, used by ``engine.forkrun`` (which forks a
host's workers itself) and by pmctl's ``direct`` launcher (which starts each worker as its own
process). Pure Python, no torch: pmctl imports it on the controller.

Ranks follow torchrun: ``rank = node_rank * nproc_per_node + local_rank``, so with host order =
node order, stage order is host order, then local rank. Worker 0 hosts the rendezvous store at
``MASTER_ADDR:MASTER_PORT`` (``init_process_group("env://")`` does that when
``TORCHELASTIC_USE_AGENT_STORE`` is unset, which is why no ``TORCHELASTIC_*`` variable is set:
there is no agent store to join).
"""

from __future__ import annotations

from dataclasses import dataclass

# What every worker of a static rendezvous finds in its environment.
ENV_KEYS = (
    "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
    "ROLE_RANK", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
)


@dataclass(frozen=True)
class Rendezvous:
    """``nnodes`` nodes of ``nproc_per_node`` workers each, meeting at ``master_addr:master_port``."""

    nnodes: int
    nproc_per_node: int
    master_addr: str
    master_port: int

    def __post_init__(self) -> None:
        if self.nnodes < 1 or self.nproc_per_node < 1:
            raise ValueError(f"need nnodes >= 1 and nproc-per-node >= 1, got {self.nnodes} x {self.nproc_per_node}")

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    def rank(self, node_rank: int, local_rank: int) -> int:
        """The global rank of one worker."""
        self._check(node_rank, local_rank)
        return node_rank * self.nproc_per_node + local_rank

    def place(self, rank: int) -> tuple[int, int]:
        """``(node_rank, local_rank)`` of a global rank."""
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} is outside 0..{self.world_size - 1}")
        return divmod(rank, self.nproc_per_node)

    def worker_env(self, node_rank: int, local_rank: int) -> dict[str, str]:
        """What torchrun sets for one worker (its role is torchrun's only one, so the role
        ranks are the global ones)."""
        rank = self.rank(node_rank, local_rank)
        world = self.world_size
        return {
            "RANK": str(rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(self.nproc_per_node),
            "GROUP_RANK": str(node_rank), "GROUP_WORLD_SIZE": str(self.nnodes),
            "ROLE_RANK": str(rank), "ROLE_WORLD_SIZE": str(world),
            "MASTER_ADDR": self.master_addr, "MASTER_PORT": str(self.master_port),
        }

    def _check(self, node_rank: int, local_rank: int) -> None:
        if not 0 <= node_rank < self.nnodes:
            raise ValueError(f"node rank {node_rank} is outside 0..{self.nnodes - 1}")
        if not 0 <= local_rank < self.nproc_per_node:
            raise ValueError(f"local rank {local_rank} is outside 0..{self.nproc_per_node - 1}")


__all__ = ["ENV_KEYS", "Rendezvous"]
