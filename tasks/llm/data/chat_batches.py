"""Batch sources of rendered conversations for midtraining and SFT (the trainer's `BatchSource`).

- `PackedChatSource` (midtraining, as nanochat): conversations rendered back to back into one
  token stream and cut into rows of B x T, like pretraining text; by default every token is
  trained on (`use_mask=True` trains on assistant tokens only).
- `SFTSource`: one conversation per row, truncated to T+1 tokens, padded to the longest row of
  the batch (or to T); targets are -1 wherever the loss mask is 0 and on padding.

Rank r of W takes every W-th conversation of an epoch's seeded shuffle, so workers see disjoint
data. The `position` after each batch (epoch, conversation cursor, token offset) is exact:
resuming from it reproduces the stream that would have followed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tasks.common.errors import InputError
from tasks.llm.data.chat_format import render_conversation
from tasks.llm.data.datasets import Task, TaskMixture, build_mixture
from tasks.llm.data.tokenizer import Tokenizer

Batch = tuple[torch.Tensor, torch.Tensor, dict]
Conversations = Task | TaskMixture


@dataclass
class _ChatSource:
    train: Conversations
    val: Conversations
    tokenizer_path: str
    batch_size: int
    seq_len: int
    seed: int = 0
    _tok: Tokenizer | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.seq_len < 2:
            raise ValueError(f"need batch_size >= 1 and seq_len >= 2, got {self.batch_size}, {self.seq_len}")
        self.tokenizer_path = str(Path(self.tokenizer_path).resolve())  # Ray workers run elsewhere
        self.tokenizer  # fail now, in the driver, if the file is missing

    def __getstate__(self) -> dict:  # the tokenizer is reloaded on the worker
        return {**self.__dict__, "_tok": None}

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tok is None:
            self._tok = Tokenizer.load(self.tokenizer_path)
        return self._tok

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def token_bytes(self) -> torch.Tensor:
        return torch.tensor(self.tokenizer.token_bytes(), dtype=torch.int64)

    def order(self, epoch: int, rank: int, world_size: int) -> list[int]:
        """This rank's conversation indices for `epoch` (a fresh seeded shuffle per epoch)."""
        if len(self.train) < world_size:
            raise ValueError(f"{len(self.train)} conversations cannot feed {world_size} workers")
        indices = list(range(len(self.train)))
        random.Random(f"{self.seed}/{epoch}").shuffle(indices)
        return indices[rank::world_size]

    def render(self, conversations: Conversations, index: int, max_tokens: int | None = None):
        return render_conversation(self.tokenizer, conversations[index], max_tokens)


@dataclass
class PackedChatSource(_ChatSource):
    use_mask: bool = False

    def _targets(self, ids: list[int], mask: list[int]) -> torch.Tensor:
        y = torch.tensor(ids[1:], dtype=torch.int64)
        if self.use_mask:
            y[torch.tensor(mask[1:]) == 0] = -1
        return y

    def batches(self, rank: int, world_size: int, start: dict | None = None) -> Iterator[Batch]:
        pos = {"epoch": 0, "cursor": 0, "offset": 0, **(start or {})}
        epoch, cursor, offset = pos["epoch"], pos["cursor"], pos["offset"]
        order = self.order(epoch, rank, world_size)
        step = self.batch_size * self.seq_len
        ids: list[int] = []
        mask: list[int] = []
        segments: list[list[int]] = []  # [epoch, cursor, first offset, length] of what `ids` holds
        while True:
            while len(ids) < step + 1:
                conv_ids, conv_mask = self.render(self.train, order[cursor])
                ids += conv_ids[offset:]
                mask += conv_mask[offset:]
                segments.append([epoch, cursor, offset, len(conv_ids) - offset])
                cursor, offset = cursor + 1, 0
                if cursor == len(order):
                    epoch, cursor = epoch + 1, 0
                    order = self.order(epoch, rank, world_size)
            window, window_mask = ids[: step + 1], mask[: step + 1]
            x = torch.tensor(window[:-1], dtype=torch.int64).view(self.batch_size, self.seq_len)
            y = self._targets(window, window_mask).view(self.batch_size, self.seq_len)
            ids, mask = ids[step:], mask[step:]  # the last target is the next batch's first input
            _drop(segments, step)
            yield x, y, {"epoch": segments[0][0], "cursor": segments[0][1], "offset": segments[0][2]}

    def val_batches(self, max_tokens: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The val conversations in order, packed the same way, until `max_tokens` are covered."""
        step = self.batch_size * self.seq_len
        ids: list[int] = []
        mask: list[int] = []
        done = 0
        for index in range(len(self.val)):
            conv_ids, conv_mask = self.render(self.val, index)
            ids += conv_ids
            mask += conv_mask
            while len(ids) >= step + 1 and done < max_tokens:
                x = torch.tensor(ids[:step], dtype=torch.int64).view(self.batch_size, self.seq_len)
                yield x, self._targets(ids[: step + 1], mask[: step + 1]).view(self.batch_size, self.seq_len)
                ids, mask, done = ids[step:], mask[step:], done + step
            if done >= max_tokens:
                return
        if done == 0:
            raise InputError(f"the val conversations hold fewer than one batch ({step + 1} tokens); "
                             "raise the val_tasks weights or lower device_batch_size / sequence_len")


def _drop(segments: list[list[int]], n: int) -> None:
    """Remove the first `n` tokens from the segment list (in place)."""
    while n:
        first = segments[0]
        if first[3] <= n:
            n -= first[3]
            segments.pop(0)
        else:
            first[2] += n
            first[3] -= n
            n = 0


@dataclass
class SFTSource(_ChatSource):
    pad_to_seq_len: bool = False

    def _row(self, conversations: Conversations, index: int) -> tuple[list[int], list[int]] | None:
        """(inputs, targets) of one conversation, or None when nothing in it is trained on."""
        ids, mask = self.render(conversations, index, self.seq_len + 1)
        targets = [t if m else -1 for t, m in zip(ids[1:], mask[1:])]
        if all(t == -1 for t in targets):
            return None
        return ids[:-1], targets

    def _collate(self, rows: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = self.seq_len if self.pad_to_seq_len else max(len(r[0]) for r in rows)
        pad = self.tokenizer.token_id("<|assistant_end|>")
        x = torch.full((len(rows), width), pad, dtype=torch.int64)
        y = torch.full((len(rows), width), -1, dtype=torch.int64)
        for i, (inputs, targets) in enumerate(rows):
            x[i, : len(inputs)] = torch.tensor(inputs)
            y[i, : len(targets)] = torch.tensor(targets)
        return x, y

    def batches(self, rank: int, world_size: int, start: dict | None = None) -> Iterator[Batch]:
        pos = {"epoch": 0, "cursor": 0, **(start or {})}
        epoch, cursor = pos["epoch"], pos["cursor"]
        order = self.order(epoch, rank, world_size)
        skipped = 0  # conversations in a row without a trainable token
        while True:
            rows = []
            while len(rows) < self.batch_size:
                row = self._row(self.train, order[cursor])
                cursor += 1
                skipped = 0 if row is not None else skipped + 1
                if row is not None:
                    rows.append(row)
                elif skipped > len(order):
                    raise ValueError("no conversation has a trainable (assistant) token within seq_len")
                if cursor == len(order):
                    epoch, cursor = epoch + 1, 0
                    order = self.order(epoch, rank, world_size)
            x, y = self._collate(rows)
            yield x, y, {"epoch": epoch, "cursor": cursor}

    def val_batches(self, max_tokens: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The val conversations in order as padded batches, until `max_tokens` input tokens."""
        rows, done = [], 0
        for index in range(len(self.val)):
            row = self._row(self.val, index)
            if row is not None:
                rows.append(row)
            if len(rows) == self.batch_size:
                x, y = self._collate(rows)
                yield x, y
                rows, done = [], done + x.numel()
                if done >= max_tokens:
                    return
        if rows:
            yield self._collate(rows)


def source_from_chat_spec(spec: dict[str, Any]) -> PackedChatSource | SFTSource:
    """Build a source from a JSON-able spec (what a Prefect task or params.yaml can carry):

    {"kind": "packed_chat" | "sft", "tokenizer": path, "batch_size": B, "seq_len": T, "seed": 0,
     "train": {task: weight}, "val": {task: weight}, "options": {task: {...}}, "data_dir": None,
     "use_mask": False (packed) / "pad_to_seq_len": False (sft)}
    """
    kind = spec.get("kind")
    if kind not in ("packed_chat", "sft"):
        raise ValueError(f"chat source kind must be packed_chat or sft, got {kind!r}")
    options, data_dir, seed = spec.get("options") or {}, spec.get("data_dir"), spec.get("seed", 0)
    train = build_mixture(spec["train"], "train", data_dir, {k: v for k, v in options.items() if k in spec["train"]}, seed)
    val = build_mixture(spec["val"], "test", data_dir, {k: v for k, v in options.items() if k in spec["val"]}, seed)
    common = dict(train=train, val=val, tokenizer_path=spec["tokenizer"], batch_size=spec["batch_size"],
                  seq_len=spec["seq_len"], seed=seed)
    if kind == "packed_chat":
        return PackedChatSource(**common, use_mask=spec.get("use_mask", False))
    return SFTSource(**common, pad_to_seq_len=spec.get("pad_to_seq_len", False))
