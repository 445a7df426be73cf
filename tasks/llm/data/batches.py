"""Where training batches come from: the `BatchSource` protocol and the token-stream source.

The trainer only sees `batches(rank, world_size, start)`, so pretraining (token shards) and
midtraining / SFT (rendered conversations, `tasks/llm/data/chat_batches.py`) plug into the same loop.
`position` is a small JSON-able dict: the state to resume from *after* the batch it came with.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from tasks.common.errors import InputError

Batch = tuple[torch.Tensor, torch.Tensor, dict]


@runtime_checkable
class BatchSource(Protocol):
    def batches(self, rank: int, world_size: int, start: dict | None) -> Iterator[Batch]:
        """Endless (inputs[B,T], targets[B,T] with -1 = ignore, position) for this rank's part of the data."""
        ...


@dataclass
class TokenStreamSource:
    """Windows of B*T+1 consecutive tokens; rank r reads the r-th of `world_size` disjoint parts.

    Tokens come from token shards on disk (`tokens_dir`, the pretraining case) or from in-memory
    arrays (`arrays={"train": ..., "val": ...}` with `byte_lengths`, for tests and byte corpora).
    Optional extras the trainer uses when present: `val_batches` and `token_bytes` for bits per byte.
    """

    batch_size: int
    seq_len: int
    tokens_dir: str = ""
    arrays: dict[str, np.ndarray] | None = None
    byte_lengths: np.ndarray | None = None
    _shards: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if bool(self.tokens_dir) == (self.arrays is not None):
            raise ValueError("give exactly one of tokens_dir (token shards) or arrays (in-memory tokens)")
        if self.tokens_dir:
            self.tokens_dir = str(Path(self.tokens_dir).resolve())  # Ray workers run elsewhere

    def __getstate__(self) -> dict:  # memmaps are reopened on the worker, never pickled
        return {**self.__dict__, "_shards": {}}

    def _split(self, split: str):
        if self.arrays is not None:
            if split not in self.arrays:
                raise ValueError(f"no {split!r} tokens among {list(self.arrays)}")
            return self.arrays[split]
        if split not in self._shards:
            from tasks.llm.data.shards import TokenShards

            self._shards[split] = TokenShards(self.tokens_dir, split)
        return self._shards[split]

    def _read(self, data, start: int, n: int) -> np.ndarray:
        return data.read(start, n) if hasattr(data, "read") else data[start:start + n]

    @property
    def vocab_size(self) -> int:
        if self.arrays is not None:
            return len(self.byte_lengths) if self.byte_lengths is not None else int(self.arrays["train"].max()) + 1
        return self._split("train").vocab_size

    @property
    def tokenizer_path(self) -> str:
        return str(self._split("train").tokenizer_path) if self.tokens_dir else ""

    def token_bytes(self) -> torch.Tensor:
        """Bytes of text per token id (0 for special tokens)."""
        if self.byte_lengths is not None:
            return torch.tensor(np.asarray(self.byte_lengths), dtype=torch.int64)
        if self.arrays is not None:
            raise ValueError("in-memory tokens need byte_lengths for bits per byte")
        from tasks.llm.data.tokenizer import Tokenizer

        return torch.tensor(Tokenizer.load(self.tokenizer_path).token_bytes(), dtype=torch.int64)

    def _window(self, data, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.batch_size * self.seq_len
        buf = torch.from_numpy(self._read(data, start, n + 1).astype(np.int64))
        return buf[:-1].view(self.batch_size, self.seq_len), buf[1:].view(self.batch_size, self.seq_len)

    def batches(self, rank: int, world_size: int, start: dict | None = None) -> Iterator[Batch]:
        data = self._split("train")
        part = len(data) // world_size
        lo, need = rank * part, self.batch_size * self.seq_len + 1
        if part < need:
            raise ValueError(f"the train split has {len(data)} tokens: too few for {world_size} worker(s) x "
                             f"one batch of {self.batch_size}x{self.seq_len} (+1) tokens")
        offset, epoch = (start or {}).get("offset", 0), (start or {}).get("epoch", 0)
        while True:
            if offset + need > part:
                offset, epoch = 0, epoch + 1
            x, y = self._window(data, lo + offset)
            offset += need - 1
            yield x, y, {"offset": offset, "epoch": epoch}

    def val_batches(self, max_tokens: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The first `max_tokens` (rounded up to whole batches) of the val split, same windows every time."""
        data = self._split("val")
        n = self.batch_size * self.seq_len
        if len(data) < n + 1:
            raise InputError(f"the val split has {len(data)} tokens: fewer than one batch ({n + 1}); "
                             "lower device_batch_size / sequence_len or tokenize more text")
        for start in range(0, min(max_tokens, len(data) - 1 - n) + 1, n):
            yield self._window(data, start)
