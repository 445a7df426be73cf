"""Data-parallel communication: averaging tensors across workers with one all-reduce, counted.

Every all-reduce goes through `allreduce_mean`, which flattens the tensors into one buffer (one
collective per step, not one per parameter) and records bytes and seconds. Bytes are what one
worker sends plus what it receives, as everywhere in the trainer (the hub's sites count their
messages the same way): a ring all-reduce of B bytes over N workers sends 2(N-1)/N B and
receives as much.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class CommStats:
    bytes: int = 0
    seconds: float = 0.0
    rounds: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def allreduce_mean(tensors: list[torch.Tensor], stats: CommStats, wire_dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """The element-wise mean of `tensors` over all workers (fp32), sent as `wire_dtype`."""
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors]).to(wire_dtype)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        start = time.perf_counter()
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        stats.seconds += time.perf_counter() - start
        n = dist.get_world_size()
        stats.bytes += 2 * (2 * (n - 1) * flat.numel() * flat.element_size() // n)
        flat = flat.float() / dist.get_world_size()
    stats.rounds += 1
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset:offset + t.numel()].view_as(t).float())
        offset += t.numel()
    return out


def allreduce_gradients(model: nn.Module, stats: CommStats) -> None:
    """Replace every gradient by its mean over workers: the DDP step."""
    params = [p for p in model.parameters() if p.grad is not None]
    for p, g in zip(params, allreduce_mean([p.grad for p in params], stats)):
        p.grad.copy_(g)
