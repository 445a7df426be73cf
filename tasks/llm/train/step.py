"""The step core: one optimizer step of one worker, the same in every trainer (single, DDP, each site's workers)."""

from __future__ import annotations

import functools

import torch

from tasks.llm.model.gpt import GPT


def take_step(model: GPT, optimizers: list, micro: list, step: int, *, accum: int, autocast: bool, device: str,
              clip: float, injector=None, guard=None, can_roll_back: bool = False, allreduce=None) -> tuple[str, float, int]:
    """One optimizer step of this worker: forward and backward (through the SDC injector and guard when on),
    `allreduce` of the gradients, clipping, the optimizers' step: (action, summed loss, tokens).

    The action is "step", "skip" (the guard dropped it) or "rollback" (the caller restores a checkpoint)."""
    compute = functools.partial(forward_backward, model, micro, accum, autocast, device)
    if injector is not None:
        compute = injector.wrap(step + 1, compute)
    if guard is None:
        action, (loss_sum, tokens) = "step", compute()
    else:
        action, (loss_sum, tokens) = guard.review(step + 1, compute, can_roll_back=can_roll_back)
    if action == "step":
        if allreduce is not None:
            allreduce()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for opt in optimizers:
            opt.step()
    model.zero_grad(set_to_none=True)
    return action, loss_sum, tokens


def forward_backward(model: GPT, micro: list, accum: int, autocast: bool, device: str) -> tuple[float, int]:
    """Forward and backward of one step's micro-batches, gradients accumulating: (summed loss, tokens)."""
    loss_sum, tokens = 0.0, 0
    for x, y, _ in micro:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            loss = model(x, y)
        (loss / accum).backward()
        loss_sum += loss.item()
        tokens += x.numel()
    return loss_sum, tokens
