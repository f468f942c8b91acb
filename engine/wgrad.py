"""Deferred weight gradients: how a backward is split into B (input gradient) and W (weight
gradient), in the spirit of Megatron's weight-gradient store (written from scratch).

Every linear layer runs through ``DeferredLinear``. During a B the store is *deferring*: the
linear's backward returns only the input gradient and stashes ``(input, grad_output)``; the
autograd graph is freed as usual. The later W of that micro-batch replays the stash as two
matmuls per layer and accumulates into ``.grad``. Small parameters (layer norms, embeddings)
get their gradients during B: they cost little and keep the split exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class _Pending:
    module: "DeferredLinear"
    inp: torch.Tensor
    grad_out: torch.Tensor


@dataclass
class WeightGradStore:
    """Stashed weight-gradient work per micro-batch."""

    deferring: bool = False
    _current: list[_Pending] = field(default_factory=list)
    _by_mb: dict[int, list[_Pending]] = field(default_factory=dict)

    def begin(self, defer: bool) -> None:
        """Called before a backward: ``defer`` = this is a B (W comes later)."""
        self.deferring = defer
        self._current = []

    def end(self, mb: int) -> None:
        """Called after a backward: files the stashed work under micro-batch ``mb``."""
        if self.deferring:
            self._by_mb.setdefault(mb, []).extend(self._current)
        self._current = []
        self.deferring = False

    def stash(self, item: _Pending) -> None:
        self._current.append(item)

    def run(self, mb: int) -> None:
        """The W of micro-batch ``mb``: computes and accumulates its weight gradients."""
        for p in self._by_mb.pop(mb, []):
            g2 = p.grad_out.reshape(-1, p.grad_out.shape[-1])
            x2 = p.inp.reshape(-1, p.inp.shape[-1])
            _accumulate(p.module.weight, g2.t() @ x2)
            if p.module.bias is not None:
                _accumulate(p.module.bias, g2.sum(0))

    def pending(self) -> list[int]:
        """Micro-batches whose W has not run yet."""
        return sorted(self._by_mb)


def _accumulate(param: nn.Parameter, grad: torch.Tensor) -> None:
    if param.grad is None:
        param.grad = grad.to(param.dtype)
    else:
        param.grad.add_(grad)


class _LinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, module):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.module = module
        return nn.functional.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        module: DeferredLinear = ctx.module
        grad_x = grad_out @ weight if ctx.needs_input_grad[0] else None
        store = module.store
        if store is not None and store.deferring:
            store.stash(_Pending(module, x.detach(), grad_out.detach()))
            return grad_x, None, None, None
        g2 = grad_out.reshape(-1, grad_out.shape[-1])
        grad_w = g2.t() @ x.reshape(-1, x.shape[-1])
        grad_b = g2.sum(0) if module.bias is not None else None
        return grad_x, grad_w, grad_b, None


class DeferredLinear(nn.Linear):
    """``nn.Linear`` whose weight gradient can be deferred to a W op through ``store``."""

    store: WeightGradStore | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _LinearFn.apply(x, self.weight, self.bias, self)
