"""Training data: a deterministic token stream and the micro-batches cut from it.

The synthetic stream is a fixed random Markov chain over the vocabulary (drawn from the
seed): every token has 4 possible successors with probabilities 0.55/0.25/0.15/0.05. Its
entropy (about 1.1 nats) is far below log(vocab), so the loss visibly falls from ~5.5 as the
model learns the transition table. ``--data FILE`` uses the file's bytes as tokens instead.
Micro-batch windows are drawn from (seed, iteration, micro-batch) alone, so every stage and
the single-process reference see the same data without talking to each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.errors import EngineConfigError

STREAM_TOKENS = 1 << 16
_SUCCESSOR_PROBS = np.array([0.55, 0.25, 0.15, 0.05])


def markov_stream(vocab: int, seed: int, length: int = STREAM_TOKENS) -> np.ndarray:
    """``length`` tokens of the seed's fixed random Markov chain."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(0, vocab, size=(vocab, len(_SUCCESSOR_PROBS)))
    choices = rng.choice(len(_SUCCESSOR_PROBS), size=length, p=_SUCCESSOR_PROBS)
    out = np.empty(length, dtype=np.int64)
    cur = int(rng.integers(0, vocab))
    for i in range(length):
        out[i] = cur
        cur = int(successors[cur, choices[i]])
    return out


@dataclass
class TokenData:
    """Cuts (inputs, targets) windows of ``seq`` tokens from a stream."""

    stream: np.ndarray
    seq: int
    micro_batch: int
    seed: int

    def batch(self, iteration: int, mb: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets, each ``[micro_batch, seq]`` int64."""
        rng = np.random.default_rng((self.seed, iteration, mb))
        starts = rng.integers(0, len(self.stream) - self.seq - 1, size=self.micro_batch)
        rows = np.stack([self.stream[s : s + self.seq + 1] for s in starts])
        t = torch.from_numpy(rows)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()


def load_data(vocab: int, seq: int, micro_batch: int, seed: int,
              path: str | None = None) -> TokenData:
    """The synthetic stream, or the bytes of ``path`` as tokens (needs vocab >= 256)."""
    if path is None:
        return TokenData(markov_stream(vocab, seed), seq, micro_batch, seed)
    p = Path(path)
    if not p.is_file():
        raise EngineConfigError(f"--data {path}: no such file")
    raw = np.frombuffer(p.read_bytes(), dtype=np.uint8).astype(np.int64)
    if vocab < 256:
        raise EngineConfigError("--data needs a preset with vocab >= 256 (byte tokens)")
    if len(raw) < seq + 2:
        raise EngineConfigError(f"--data {path}: {len(raw)} bytes, need at least {seq + 2}")
    return TokenData(raw, seq, micro_batch, seed)
