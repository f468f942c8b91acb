"""The GPT-style decoder as a list of layers (embedding, pre-norm blocks, head) and its split
into pipeline stages. Each layer is initialised from (seed, global layer index) alone, so a
stage builds only its own layers and the unpipelined reference builds them all, identically.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.presets import Preset
from engine.wgrad import DeferredLinear, WeightGradStore

DTYPES = {"float32": torch.float32, "float16": torch.float16, "float64": torch.float64,
          "bfloat16": torch.bfloat16}


class Embedding(nn.Module):
    """Token + learned position embeddings (layer 0)."""

    def __init__(self, p: Preset) -> None:
        super().__init__()
        self.tok = nn.Embedding(p.vocab, p.hidden)
        self.pos = nn.Parameter(torch.zeros(p.seq, p.hidden))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tok(tokens) + self.pos[: tokens.shape[1]]


class Block(nn.Module):
    """Pre-norm block: causal self-attention then a 4x MLP, both residual."""

    def __init__(self, p: Preset) -> None:
        super().__init__()
        self.heads = p.heads
        self.ln1 = nn.LayerNorm(p.hidden)
        self.qkv = DeferredLinear(p.hidden, 3 * p.hidden)
        self.proj = DeferredLinear(p.hidden, p.hidden)
        self.ln2 = nn.LayerNorm(p.hidden)
        self.fc1 = DeferredLinear(p.hidden, 4 * p.hidden)
        self.fc2 = DeferredLinear(4 * p.hidden, p.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(h, dim=-1)
        shape = (b, t, self.heads, h // self.heads)
        q, k, v = (z.reshape(shape).transpose(1, 2) for z in (q, k, v))
        att = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, h))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


class Head(nn.Module):
    """Final norm + LM head (the last layer); returns logits."""

    def __init__(self, p: Preset) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(p.hidden)
        self.lm = DeferredLinear(p.hidden, p.vocab, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm(self.ln(x))


def build_layer(p: Preset, index: int, seed: int) -> nn.Module:
    """Global layer ``index`` (0 = embedding, last = head), initialised from (seed, index)."""
    gen = torch.Generator().manual_seed(seed * 100_003 + index)
    layer: nn.Module
    if index == 0:
        layer = Embedding(p)
    elif index == p.num_layers - 1:
        layer = Head(p)
    else:
        layer = Block(p)
    with torch.no_grad():
        for name, param in layer.named_parameters():
            if "ln" in name:
                param.copy_(torch.ones_like(param) if name.endswith("weight") else
                            torch.zeros_like(param))
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
    return layer


def stage_layer_range(split: tuple[int, ...], stage: int) -> range:
    """Global layer indices held by ``stage``."""
    start = sum(split[:stage])
    return range(start, start + split[stage])


class StageModule(nn.Module):
    """The layers of one stage, run in order; names parameters by global layer index."""

    def __init__(self, p: Preset, split: tuple[int, ...], stage: int, seed: int,
                 store: WeightGradStore | None) -> None:
        super().__init__()
        self.indices = list(stage_layer_range(split, stage))
        self.layers = nn.ModuleDict({str(i): build_layer(p, i, seed) for i in self.indices})
        for m in self.modules():
            if isinstance(m, DeferredLinear):
                m.store = store

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in self.indices:
            x = self.layers[str(i)](x)
        return x


def build_full_model(p: Preset, seed: int) -> StageModule:
    """The unpipelined reference: every layer in one module (no deferred W)."""
    return StageModule(p, (p.num_layers,), 0, seed, store=None)
