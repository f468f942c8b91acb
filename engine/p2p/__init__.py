"""Point-to-point paths between neighbouring stages: inline (compute thread, one group per
link and direction) and delegates (worker threads, own gloo groups, host memory). Both carry
the same messages. The choices the engine's options name live here (no torch import)."""

from typing import Literal

Semantics = Literal["native", "nccl"]  # --p2p-semantics: gloo as is, or NCCL's rules emulated
SEMANTICS: tuple[Semantics, ...] = ("native", "nccl")
Layout = Literal["link", "shared"]  # inline groups: per link and direction, or the main group
LAYOUTS: tuple[Layout, ...] = ("link", "shared")
Pairing = Literal["megatron", "early"]  # --p2p-pairing of 1F1B's inline p2p (engine.p2p.batched)
PAIRINGS: tuple[Pairing, ...] = ("megatron", "early")
