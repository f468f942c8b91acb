"""The unpipelined reference every engine gradient test compares with: the tiny preset's whole
model in float64, one backward over ``n`` micro-batches of the fixed data."""

from __future__ import annotations

import functools

import torch

from engine.data import load_data
from engine.model import build_full_model
from engine.presets import get_preset
from engine.stage import lm_loss

SEED = 11


@functools.cache
def unpipelined(n: int) -> tuple[dict[str, torch.Tensor], float]:
    """Gradients and loss of the unpipelined tiny model over ``n`` micro-batches (float64)."""
    p = get_preset("tiny")
    model = build_full_model(p, SEED).double()
    data = load_data(p.vocab, p.seq, p.micro_batch, SEED)
    total = 0.0
    for mb in range(n):
        x, y = data.batch(0, mb)
        loss = lm_loss(model(x), y) / n
        loss.backward()
        total += float(loss.detach())
    return {k: v.grad for k, v in model.named_parameters()}, total
