"""The stage's optimizer: ``torch.optim.AdamW``'s update with its defaults, through the same
functional kernel (``torch.optim.adam.adam``, decoupled weight decay).

Why not ``torch.optim.AdamW`` itself: its constructor and ``step`` import ``torch._dynamo``
(about 1.4 s of CPU per stage process, 4 processes sharing 2 cores on the CPU presets), which
every measured cell paid at start-up; the engine never compiles, so the import buys nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.adam import adam

# torch before the AdamW -> Adam merge (early 2025) has no decoupled_weight_decay in adam();
# its own functional adamw() is the same update there.
_ADAM_DECOUPLES = "decoupled_weight_decay" in inspect.signature(adam).parameters


def _adamw_kernel() -> Any:
    if _ADAM_DECOUPLES:
        return lambda *args, **kw: adam(*args, decoupled_weight_decay=True, **kw)
    from torch.optim.adamw import adamw

    return adamw

BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 1e-2  # torch.optim.AdamW's default


_HALF = (torch.float16, torch.bfloat16)


class AdamW:
    """``torch.optim.AdamW(params, lr=lr)``'s numerics: same state, same kernel, same order.
    Half-precision parameters get an fp32 master copy and fp32 state (Adam's eps 1e-8 and
    squared gradients underflow in fp16); the update is copied back after each step."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float) -> None:
        self.params = list(params)
        self.lr = lr
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def _state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        st = self.state.get(p)
        if st is None:
            # as torch's Adam: the step count is a CPU scalar of the default float precision
            f64 = torch.get_default_dtype() == torch.float64
            step_dtype = torch.float64 if f64 else torch.float32
            master = p.detach().float() if p.dtype in _HALF else None
            like = p if master is None else master
            st = self.state[p] = {
                "step": torch.tensor(0.0, dtype=step_dtype, device="cpu"),
                "exp_avg": torch.zeros_like(like, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(like, memory_format=torch.preserve_format),
            }
            if master is not None:
                st["master"] = master
        return st

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        params = [p for p in self.params if p.grad is not None]
        if not params:
            return
        states = [self._state(p) for p in params]
        weights = [s.get("master", p) for p, s in zip(params, states)]
        grads = [p.grad if "master" not in s else p.grad.float() for p, s in zip(params, states)]
        _adamw_kernel()(
            weights,
            grads,
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            [s["step"] for s in states],
            foreach=None,
            capturable=False,
            differentiable=False,
            fused=None,
            grad_scale=None,
            found_inf=None,
            has_complex=any(torch.is_complex(p) for p in params),
            amsgrad=False,
            beta1=BETAS[0],
            beta2=BETAS[1],
            lr=self.lr,
            weight_decay=WEIGHT_DECAY,
            eps=EPS,
            maximize=False,
        )
        for p, s in zip(params, states):
            if "master" in s:
                p.copy_(s["master"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drops (or zeroes) every gradient."""
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.zero_()
