"""Bits per byte: the tokenizer-independent loss (nats summed over tokens / (ln 2 x bytes of text)).

Targets that are special tokens (0 bytes) or ignored (-1) count for neither numerator nor
denominator, so models with different vocabularies compare on the same text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


@torch.no_grad()
def bits_per_byte(model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], token_bytes: torch.Tensor,
                  autocast: bool = False) -> float:
    nats, n_bytes = 0.0, 0
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    for x, y in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model(x.to(device), y.to(device), loss_reduction="none").view(-1).float().cpu()
        y = y.reshape(-1)
        b = torch.where(y >= 0, token_bytes[y.clamp(min=0)], 0)
        nats += loss[b > 0].sum().item()
        n_bytes += int(b.sum().item())
    model.train(was_training)
    if n_bytes == 0:
        raise ValueError("no text bytes among the evaluation targets")
    return nats / (math.log(2) * n_bytes)
