"""One pipeline stage's compute: F, B (input gradient), W (weight gradient) and BW (1F1B's
full backward) per micro-batch, with the per-micro-batch state they hand to each other."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# torch.autograd.backward imports this (and sympy, ~0.5 s of CPU) the first time it gets a
# gradient tensor. Lazily, the first B of each stage pays it in turn, on the pipeline's
# critical path; up front the stages pay it in parallel (and a forked stage not at all).
import torch.fx.experimental.symbolic_shapes  # noqa: F401
from torch import nn

from engine.model import StageModule
from engine.wgrad import WeightGradStore


@dataclass
class _MbState:
    inp: torch.Tensor | None  # the stage input (leaf requiring grad), None on stage 0
    out: torch.Tensor  # the stage output, or the scaled loss on the last stage


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (half-precision logits are upcast to float32)."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


class StageRunner:
    """Runs ops of one stage. The last stage's F computes the loss of its micro-batch scaled
    by 1/N, so gradients summed over micro-batches are those of the mean loss."""

    def __init__(self, module: StageModule, store: WeightGradStore, is_first: bool,
                 is_last: bool, num_microbatches: int) -> None:
        self.module = module
        self.store = store
        self.is_first = is_first
        self.is_last = is_last
        self.num_microbatches = num_microbatches
        self._state: dict[int, _MbState] = {}
        self.losses: dict[int, torch.Tensor] = {}

    def forward(self, mb: int, inp: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
        """F: returns the activation to send downstream (None on the last stage)."""
        leaf = None
        if not self.is_first:
            leaf = inp.detach().requires_grad_(True)
            inp = leaf
        out = self.module(inp)
        if self.is_last:
            assert targets is not None
            loss = lm_loss(out, targets) / self.num_microbatches
            self.losses[mb] = loss.detach()
            self._state[mb] = _MbState(leaf, loss)
            return None
        self._state[mb] = _MbState(leaf, out)
        return out.detach()

    def _backward(self, mb: int, grad_out: torch.Tensor | None, defer: bool) -> torch.Tensor | None:
        st = self._state.pop(mb)
        self.store.begin(defer)
        try:
            if self.is_last:
                torch.autograd.backward(st.out)
            else:
                assert grad_out is not None
                torch.autograd.backward(st.out, grad_out)
        finally:
            self.store.end(mb)
        if st.inp is None:
            return None
        return st.inp.grad

    def backward_input(self, mb: int, grad_out: torch.Tensor | None) -> torch.Tensor | None:
        """B: the gradient w.r.t. the stage input (None on stage 0); W work is stashed."""
        return self._backward(mb, grad_out, defer=True)

    def backward_weight(self, mb: int) -> None:
        """W: the deferred weight gradients of micro-batch ``mb``."""
        self.store.run(mb)

    def backward_full(self, mb: int, grad_out: torch.Tensor | None) -> torch.Tensor | None:
        """BW: input and weight gradients at once (1F1B)."""
        return self._backward(mb, grad_out, defer=False)

    def take_loss(self) -> float | None:
        """The iteration's loss (mean over micro-batches) on the last stage, and resets."""
        if not self.is_last or not self.losses:
            return None
        total = float(torch.stack(list(self.losses.values())).sum().item())
        self.losses.clear()
        return total

    def check_drained(self) -> None:
        """Every F got its backward and every B its W (a schedule bug otherwise)."""
        if self._state or self.store.pending():
            raise RuntimeError(
                f"schedule left work undone: no backward for micro-batches {sorted(self._state)}, "
                f"no W for {self.store.pending()}"
            )
