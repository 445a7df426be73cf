"""IID training windows for the curtailment bench: every site and the baseline draw from the whole corpus.

TokenStreamSource gives rank r of w the r-th contiguous part of the corpus, read in order. On a
corpus ordered by topic (tinyshakespeare: play after play, val at the end) that makes the data,
not the training, decide the comparison: one site training non-stop reads the first plays in order,
three sites read three distant parts, and their val bpb differs by what each happened to read last.
Here the windows of the whole train split are shuffled (seeded, anew each epoch) and dealt to the
ranks in turn, as the study's IID partitions and nanochat's interleaved row groups do: every site,
and the centralised run, sees the same distribution.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np

from tasks.llm.data.batches import Batch, TokenStreamSource


@dataclass
class IidWindows(TokenStreamSource):
    seed: int = 0

    @classmethod
    def of(cls, source: TokenStreamSource, seed: int) -> IidWindows:
        """The same tokens as `source` (its shards or arrays), dealt IID."""
        kept = {f.name: getattr(source, f.name) for f in fields(TokenStreamSource) if f.init and f.name != "_shards"}
        return cls(**kept, seed=seed)

    def batches(self, rank: int, world_size: int, start: dict | None = None) -> Iterator[Batch]:
        data = self._split("train")
        stride = self.batch_size * self.seq_len
        windows = (len(data) - 1) // stride
        if windows < world_size:
            raise ValueError(f"the train split has {len(data)} tokens: too few for {world_size} worker(s) x "
                             f"one batch of {self.batch_size}x{self.seq_len} (+1) tokens")
        k, epoch = (start or {}).get("k", 0), (start or {}).get("epoch", 0)
        while True:
            mine = np.random.default_rng([self.seed, epoch]).permutation(windows)[rank::world_size]
            while k < len(mine):
                x, y = self._window(data, int(mine[k]) * stride)
                k += 1
                yield x, y, {"k": k, "epoch": epoch}
            k, epoch = 0, epoch + 1
