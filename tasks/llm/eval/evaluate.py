"""Evaluation of a checkpoint: bits per byte, multiple choice by letter logits, generative tasks.

- bits per byte on the held-out (val) token shards: tokenizer-independent, comparable across stages;
- multiple choice (MMLU, ARC, ...): after the prompt and `<|assistant_start|>`, the choice is the
  answer letter with the highest logit *among the letters*, so a model is scored on its
  preference between A/B/C/D even when it would rather say something else (as nanochat);
- generative tasks (GSM8K, HumanEval, synthetic): greedy completion with the engine (KV cache,
  calculator tool), judged by the task's own `evaluate(conversation, completion)`.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import nullcontext
from typing import Any

import torch

from tasks.llm.model.bpb import bits_per_byte
from tasks.llm.data.chat_format import render_for_completion
from tasks.llm.eval.engine import Engine


def letter_ids(tokenizer, letters: list[str]) -> list[int]:
    """The single token of each answer letter (a multi-token letter cannot be scored by one logit)."""
    ids = []
    for letter in letters:
        encoded = tokenizer.encode(letter)
        if len(encoded) != 1:
            raise ValueError(f"answer letter {letter!r} is not a single token ({encoded})")
        ids.append(encoded[0])
    return ids


@torch.inference_mode()
def choose_letters(model, prompts: list[list[int]], choice_ids: list[list[int]], batch_size: int = 16,
                   autocast: bool = False, pad_id: int = 0) -> list[int]:
    """For each prompt, the index of the choice token with the highest next-token logit.

    Prompts are right-padded into batches; causal attention makes the padding invisible to the
    last real position, whose logits are read.
    """
    if len(prompts) != len(choice_ids):
        raise ValueError("one list of choice tokens per prompt is needed")
    picks: list[int] = []
    for lo in range(0, len(prompts), batch_size):
        chunk = prompts[lo:lo + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        for row, prompt in enumerate(chunk):
            ids[row, :len(prompt)] = torch.tensor(prompt)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext()
        with ctx:
            logits = model(ids).float()
        for row, prompt in enumerate(chunk):
            options = torch.tensor(choice_ids[lo + row])
            picks.append(int(logits[row, len(prompt) - 1, options].argmax()))
    return picks


def bpb_on_shards(model, tokens_dir: str, seq_len: int, max_tokens: int, batch_size: int = 4,
                  autocast: bool = False) -> float:
    """Bits per byte on the first `max_tokens` of the val split of a token-shards folder."""
    from tasks.llm.data.batches import TokenStreamSource
    from tasks.llm.data.shards import TokenShards

    available = len(TokenShards(tokens_dir, "val")) - 1  # a small val split still gets one (smaller) batch
    seq_len = max(1, min(seq_len, model.config.sequence_len, available))
    batch_size = max(1, min(batch_size, available // seq_len))
    source = TokenStreamSource(batch_size=batch_size, seq_len=seq_len, tokens_dir=tokens_dir)
    return bits_per_byte(model, source.val_batches(max_tokens), source.token_bytes(), autocast)


def _examples(task, max_examples: int) -> list[dict[str, Any]]:
    n = len(task) if max_examples <= 0 else min(len(task), max_examples)
    return [task[i] for i in range(n)]


def evaluate_multiple_choice(model, tokenizer, task, max_examples: int = 0, batch_size: int = 16,
                             autocast: bool = False) -> dict[str, Any]:
    """Accuracy of letter-logit answers; each conversation carries its own `letters`."""
    conversations = _examples(task, max_examples)
    prompts = [render_for_completion(tokenizer, c) for c in conversations]
    options = [c["letters"] for c in conversations]
    picks = choose_letters(model, prompts, [letter_ids(tokenizer, o) for o in options], batch_size, autocast,
                           pad_id=tokenizer.bos_id)
    correct = [bool(task.evaluate(c, o[p])) for c, o, p in zip(conversations, options, picks)]
    chance = sum(1 / len(o) for o in options) / max(len(options), 1)
    return {"accuracy": sum(correct) / max(len(correct), 1), "n": len(correct), "chance": chance}


def evaluate_generative(engine: Engine, tokenizer, task, max_examples: int = 0, max_new_tokens: int = 64,
                        temperature: float = 0.0, top_k: int | None = None, seed: int = 0,
                        show: int = 0) -> dict[str, Any]:
    """Accuracy of engine completions judged by the task; `show` prints that many examples."""
    conversations = _examples(task, max_examples)
    limit = getattr(engine.model, "rotary_len", None)
    correct = too_long = 0
    for i, conversation in enumerate(conversations):
        prompt = render_for_completion(tokenizer, conversation)
        if limit is not None and len(prompt) >= limit:  # no room to answer: counts as wrong, reported
            too_long += 1
            continue
        text = engine.complete(prompt, max_tokens=max_new_tokens, temperature=temperature, top_k=top_k, seed=seed + i)
        ok = bool(task.evaluate(conversation, text))
        correct += ok
        if i < show:
            print(f"  [{'ok' if ok else 'x '}] {tokenizer.decode(prompt)[-80:]!r} -> {text[:80]!r}", flush=True)
    n = len(conversations)
    return {"accuracy": correct / max(n, 1), "n": n, "chance": majority_baseline(task, conversations),
            "prompt_too_long": too_long}


def majority_baseline(task, conversations: list[dict[str, Any]], candidates: int = 20) -> float:
    """Best accuracy of always giving one reference answer, graded by the task itself: the honest
    "chance" of a generative task (counting letters is mostly "1"). 0 when answers are not recorded."""
    answers = [c.get("answer") for c in conversations]
    if not answers or any(not isinstance(a, str) for a in answers):
        return 0.0
    best = 0
    for answer, _ in Counter(answers).most_common(candidates):
        best = max(best, sum(bool(task.evaluate(c, answer)) for c in conversations))
    return best / len(conversations)


def evaluate_task(model, tokenizer, task, engine: Engine | None = None, **kwargs) -> dict[str, Any]:
    """Dispatch on the task's `eval_type` ("categorical" = multiple choice, "generative")."""
    start = time.perf_counter()
    if task.eval_type == "categorical":
        keep = {k: kwargs[k] for k in ("max_examples", "batch_size", "autocast") if k in kwargs}
        result = evaluate_multiple_choice(model, tokenizer, task, **keep)
    elif task.eval_type == "generative":
        keep = {k: kwargs[k] for k in ("max_examples", "max_new_tokens", "temperature", "top_k", "seed", "show")
                if k in kwargs}
        engine = engine or Engine(model, tokenizer, autocast=kwargs.get("autocast", False))
        result = evaluate_generative(engine, tokenizer, task, **keep)
    else:
        raise ValueError(f"task {task!r} has unknown eval_type {task.eval_type!r}")
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result
