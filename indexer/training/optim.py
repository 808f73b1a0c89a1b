"""The optimiser step every trainer takes: one place for its order of operations."""

from __future__ import annotations

from typing import Any


def optimiser_step(opt: Any, loss: Any, sched: Any = None, clip_norm: float | None = None) -> None:
    """zero grads, backward, optionally clip the global grad norm of the optimiser's parameters,
    step, then step the schedule (once per batch)."""
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip_norm is not None:
        params = [p for group in opt.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
    opt.step()
    if sched is not None:
        sched.step()
