"""The stage's memory check before it builds its model: the stages sharing its GPU must fit the
GPU's memory by ``engine.memory_estimate``; otherwise one line and exit 2, instead of a CUDA
out-of-memory error in the middle of the first iteration (after the other stages started).

``PMCTL_PRETEND_GPU_MEMORY=24GiB`` replaces the device's size; on a CPU stage it turns the check
on, one pretend device per stage, so the refusal is tested without a GPU.
"""

from __future__ import annotations

import os

import torch

from engine.config import TrainConfig
from engine.errors import EngineConfigError
from engine.memory_estimate import estimate_stages, gpu_groups, over_budget, parse_bytes

PRETEND_ENV = "PMCTL_PRETEND_GPU_MEMORY"


def _device_bytes(device: torch.device) -> int | None:
    """The device's total memory: the pretend size, the GPU's, or None (a CPU stage, no check).
    Total, not free: the sibling stages on the same GPU start at the same moment, so what is
    free now depends on which of them came first; their needs are summed instead."""
    pretend = os.environ.get(PRETEND_ENV, "").strip()
    if pretend:
        try:
            return parse_bytes(pretend)
        except ValueError as exc:
            raise EngineConfigError(f"environment {PRETEND_ENV}: {exc}") from None
    if device.type != "cuda":
        return None
    return int(torch.cuda.mem_get_info(device)[1])


def check_stage_memory(cfg: TrainConfig, device: torch.device, local_world: int) -> None:
    """Raises ``EngineConfigError`` (one line) when this stage and the stages sharing its
    device would need more memory than the device has."""
    total = _device_bytes(device)
    if total is None:
        return
    local_world = max(local_world, cfg.local_rank + 1)
    devices = torch.cuda.device_count() if device.type == "cuda" else local_world
    group = next(g for g in gpu_groups(local_world, devices) if cfg.local_rank in g)
    first = cfg.rank - cfg.local_rank  # the node's first stage (stage order = node, local rank)
    estimates = estimate_stages(cfg.preset, cfg.split, cfg.dtype, cfg.method.id,
                                cfg.microbatches, cfg.trace is not None,
                                cuda=device.type == "cuda")
    name = f"GPU {device.index}" if device.type == "cuda" else f"the pretend device of stage {cfg.rank}"
    problem = over_budget([estimates[first + r] for r in group], total, name)
    if problem:
        raise EngineConfigError(
            f"{problem} (use more stages or GPUs, fewer micro-batches or a smaller preset)")
