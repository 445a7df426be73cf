"""Sampling engine: KV-cached generation with temperature / top-k and the calculator tool.

As nanochat: the prompt is prefilled once (batch 1) and its cache copied to every sample, then
tokens are decoded one at a time. When a row emits `<|python_start|> expr <|python_end|>`, the
engine evaluates `expr` with the restricted calculator and forces
`<|output_start|> result <|output_end|>` into that row before the model continues. A row stops
at `<|assistant_end|>` or `<|bos|>`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from tasks.llm.eval.calculator import calculate
from tasks.llm.model.kv_cache import KVCache


@dataclass
class _Row:
    forced: deque = field(default_factory=deque)  # tokens the tool injects next
    in_python: bool = False
    expression: list[int] = field(default_factory=list)
    done: bool = False


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator) -> torch.Tensor:
    """One token id per row of `logits` [B, V]: argmax at temperature 0, else top-k sampling."""
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class Engine:
    def __init__(self, model, tokenizer, autocast: bool = False):
        self.model, self.tokenizer = model, tokenizer
        self.autocast = autocast
        t = tokenizer.token_id
        self.python_start, self.python_end = t("<|python_start|>"), t("<|python_end|>")
        self.output_start, self.output_end = t("<|output_start|>"), t("<|output_end|>")
        self.stop = {t("<|assistant_end|>"), t("<|bos|>")}

    def _forward(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.autocast else nullcontext()
        with ctx:
            return self.model(ids, kv_cache=cache)[:, -1, :].float()

    def _cache(self, batch: int, length: int) -> KVCache:
        c = self.model.config
        return KVCache(batch, c.n_kv_head, length, c.n_embd // c.n_head, c.n_layer)

    @torch.inference_mode()
    def generate(self, tokens: list[int], num_samples: int = 1, max_tokens: int = 256, temperature: float = 0.0,
                 top_k: int | None = None, seed: int = 0) -> Iterator[tuple[list[int], list[int]]]:
        """Yield, per step, one token per sample and whether each was sampled (1) or forced by the tool (0)."""
        if not tokens:
            raise ValueError("generate needs a non-empty prompt")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        limit = getattr(self.model, "rotary_len", None)
        if limit is not None:
            max_tokens = min(max_tokens, limit - len(tokens))
            if max_tokens <= 0:
                raise ValueError(f"prompt of {len(tokens)} tokens leaves no room to generate (limit {limit})")
        self.model.eval()
        generator = torch.Generator().manual_seed(seed)
        prefill = self._cache(1, len(tokens))
        logits = self._forward(torch.tensor([tokens], dtype=torch.long), prefill)
        cache = self._cache(num_samples, len(tokens) + max_tokens)
        cache.prefill(prefill)
        logits = logits.expand(num_samples, -1)
        rows = [_Row() for _ in range(num_samples)]
        for _ in range(max_tokens):
            sampled = sample_next(logits, temperature, top_k, generator).tolist()
            column, masks = [], []
            for row, token in zip(rows, sampled):
                if row.forced:
                    token, mask = row.forced.popleft(), 0
                else:
                    mask = 1
                column.append(token)
                masks.append(mask)
                self._track(row, token)
            yield column, masks
            if all(row.done for row in rows):
                return
            logits = self._forward(torch.tensor(column, dtype=torch.long).unsqueeze(1), cache)

    def _track(self, row: _Row, token: int) -> None:
        """Stop detection and the calculator state machine of one row."""
        if token in self.stop:
            row.done = True
        elif token == self.python_start:
            row.in_python, row.expression = True, []
        elif token == self.python_end and row.in_python:
            row.in_python = False
            result = calculate(self.tokenizer.decode(row.expression))
            if result is not None:
                row.forced.extend([self.output_start, *self.tokenizer.encode(result), self.output_end])
        elif row.in_python:
            row.expression.append(token)

    def generate_batch(self, tokens: list[int], num_samples: int = 1, **kwargs) -> tuple[list[list[int]], list[list[int]]]:
        """Completed samples (without the prompt and without the stop token) and their sampled/forced masks."""
        results = [[] for _ in range(num_samples)]
        masks = [[] for _ in range(num_samples)]
        done = [False] * num_samples
        for column, column_masks in self.generate(tokens, num_samples, **kwargs):
            for i, (token, mask) in enumerate(zip(column, column_masks)):
                if done[i]:
                    continue
                if token in self.stop:
                    done[i] = True
                else:
                    results[i].append(token)
                    masks[i].append(mask)
        return results, masks

    def complete(self, tokens: list[int], **kwargs) -> str:
        """Greedy (or sampled) text of one completion."""
        ids, _ = self.generate_batch(tokens, 1, **kwargs)
        return self.tokenizer.decode(ids[0])
