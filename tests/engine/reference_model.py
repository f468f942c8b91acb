"""The unpipelined reference every engine gradient test compares with: the tiny preset's whole
model in float64, one backward over ``n`` micro-batches of the fixed data."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
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


def assert_iteration_matches(dump: Path, it: int, stages: int, n: int, label: str) -> dict[str, torch.Tensor]:
    """Iteration ``it``'s gradients (dumped per stage by ``--dump-grads``) and last-stage loss
    equal the unpipelined model's over ``n`` micro-batches; returns the gradients."""
    ref, ref_loss = unpipelined(n)
    got: dict[str, torch.Tensor] = {}
    for s in range(stages):
        d = torch.load(dump / f"it{it}_stage{s}.pt")
        got.update(d["grads"])
        if s == stages - 1:
            assert d["loss"] == pytest.approx(ref_loss, rel=1e-12), label
    assert got.keys() == ref.keys(), label
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-9, atol=1e-12, msg=f"{label}: {k}")
    return got
