"""Key/value cache for incremental decoding: one tensor for all layers, grown on demand.

Attention calls `insert_kv(layer, k, v)` with the new chunk's keys/values [B, H, T, D] and gets
back everything cached so far including the chunk; `pos` advances once the last layer inserted,
so all layers of one forward see the same prefix length.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, batch_size: int, num_heads: int, seq_len: int, head_dim: int, num_layers: int,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        self.shape = (num_layers, 2, batch_size, num_heads, seq_len, head_dim)
        self.dtype, self.device = dtype, device
        self.cache: torch.Tensor | None = None
        self.pos = 0

    def reset(self) -> None:
        self.pos = 0

    def get_pos(self) -> int:
        return self.pos

    def insert_kv(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cache is None:
            self.cache = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        t0, t1 = self.pos, self.pos + k.size(2)
        if t1 > self.cache.size(4):  # grow the time axis (by at least 1024 positions)
            extra = max(t1 - self.cache.size(4), 1024)
            pad = torch.empty(*self.shape[:4], extra, self.shape[5], dtype=self.dtype, device=self.device)
            self.cache = torch.cat([self.cache, pad], dim=4)
            self.shape = tuple(self.cache.shape)
        self.cache[layer_idx, 0, :, :, t0:t1] = k
        self.cache[layer_idx, 1, :, :, t0:t1] = v
        if layer_idx == self.cache.size(0) - 1:
            self.pos = t1
        return self.cache[layer_idx, 0, :, :, :t1], self.cache[layer_idx, 1, :, :, :t1]

    def prefill(self, other: KVCache) -> None:
        """Copy another cache (e.g. a batch-1 prompt prefill) into this one, broadcasting over batch."""
        assert other.cache is not None, "source cache is empty"
        n = other.pos
        if self.cache is None or self.cache.size(4) < n:
            self.shape = (*self.shape[:4], max(self.shape[4], n), self.shape[5])
            self.cache = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        self.cache[:, :, :, :, :n] = other.cache[:, :, :, :, :n]
        self.pos = n
