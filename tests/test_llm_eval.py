"""Evaluation: multiple choice on models whose answer is known, generative scoring, bits per byte."""

from __future__ import annotations

import math

import pytest
import torch

from tasks.llm.data.chat_format import render_conversation, render_for_completion
from tasks.llm.eval.engine import Engine
from tasks.llm.eval.evaluate import choose_letters, evaluate_generative, evaluate_multiple_choice, letter_ids
from tasks.llm.model.gpt import GPT, GPTConfig
from tasks.llm.data.tokenizer import Tokenizer

LETTERS = ["A", "B", "C", "D"]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    text = "Which colour is the sky? Answer with the letter. A: red B: blue C: green D: black. " * 30
    return Tokenizer.train([text], vocab_size=300)


class MCTask:
    """The shape of a multiple-choice task: conversations whose last message is the answer letter."""

    eval_type = "categorical"

    def __init__(self, answers: list[int]):
        self.items = []
        for i, answer in enumerate(answers):
            question = f"Question {i}: which one? " + " ".join(f"{l}: option{j}" for j, l in enumerate(LETTERS))
            self.items.append({"messages": [{"role": "user", "content": question},
                                            {"role": "assistant", "content": LETTERS[answer]}],
                               "letters": LETTERS})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def evaluate(self, conversation, completion: str) -> bool:
        return completion.strip() == conversation["messages"][-1]["content"]


class LetterLogits(torch.nn.Module):
    """Logits that are known: the highest overall goes to a non-letter token, and among the letters
    to the one `favourite(prompt)` names."""

    def __init__(self, vocab_size: int, letter_tokens: list[int], favourite):
        super().__init__()
        self.config = GPTConfig(sequence_len=512, vocab_size=vocab_size, n_layer=1, n_head=1, n_kv_head=1, n_embd=64)
        self.vocab_size, self.letter_tokens, self.favourite = vocab_size, letter_tokens, favourite

    def forward(self, idx, targets=None, kv_cache=None):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.vocab_size)
        logits[:, :, 100] = 10.0  # not a letter: must be ignored by the scorer
        for b in range(B):
            for t in range(T):
                logits[b, t, self.letter_tokens[self.favourite(idx[b, : t + 1].tolist())]] = 5.0
        return logits


def test_multiple_choice_reads_the_letter_logits(tokenizer):
    answers = [0, 1, 2, 3, 1, 2, 0, 3, 3]
    task = MCTask(answers)
    letters = letter_ids(tokenizer, LETTERS)
    prompt_to_answer = {tuple(render_for_completion(tokenizer, c)): a for c, a in zip(task.items, answers)}
    oracle = LetterLogits(tokenizer.vocab_size, letters, lambda ids: prompt_to_answer.get(tuple(ids), 0))
    result = evaluate_multiple_choice(oracle, tokenizer, task, batch_size=4)
    assert result == {"accuracy": 1.0, "n": len(answers), "chance": 0.25}
    contrarian = LetterLogits(tokenizer.vocab_size, letters, lambda ids: (prompt_to_answer.get(tuple(ids), 0) + 1) % 4)
    assert evaluate_multiple_choice(contrarian, tokenizer, task)["accuracy"] == 0.0
    always_d = LetterLogits(tokenizer.vocab_size, letters, lambda ids: 3)
    assert evaluate_multiple_choice(always_d, tokenizer, task)["accuracy"] == pytest.approx(answers.count(3) / len(answers))


def test_a_tiny_gpt_trained_to_answer_b_is_scored_as_such(tokenizer):
    torch.manual_seed(0)
    model = GPT(GPTConfig(sequence_len=128, vocab_size=tokenizer.vocab_size, n_layer=1, n_head=1, n_kv_head=1, n_embd=64))
    train = MCTask([1] * 16)  # every training answer is B
    rows = [render_conversation(tokenizer, c) for c in train.items]
    width = max(len(ids) for ids, _ in rows)
    x = torch.zeros(len(rows), width - 1, dtype=torch.long)
    y = torch.full((len(rows), width - 1), -1, dtype=torch.long)
    for r, (ids, mask) in enumerate(rows):
        ids_t = torch.tensor(ids)
        x[r, : len(ids) - 1] = ids_t[:-1]
        y[r, : len(ids) - 1] = torch.where(torch.tensor(mask[1:]) == 1, ids_t[1:], -1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < 0.1
    answers = [0, 1, 2, 3, 1, 1, 3, 2]
    result = evaluate_multiple_choice(model.eval(), tokenizer, MCTask(answers))
    assert result["accuracy"] == pytest.approx(answers.count(1) / len(answers))


def test_batched_scoring_equals_one_by_one(tokenizer):
    torch.manual_seed(1)
    model = GPT(GPTConfig(sequence_len=64, vocab_size=tokenizer.vocab_size, n_layer=2, n_head=1, n_kv_head=1, n_embd=64))
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 1.0)
    model.eval()
    prompts = [tokenizer.encode(t) for t in ("Which", "Which colour is the sky?", "A: red B: blue C", "sky")]
    letters = [letter_ids(tokenizer, LETTERS)] * len(prompts)
    batched = choose_letters(model, prompts, letters, batch_size=4)
    single = choose_letters(model, prompts, letters, batch_size=1)
    assert batched == single
    with torch.no_grad():
        expected = [int(model(torch.tensor([p]))[0, -1, letters[0]].argmax()) for p in prompts]
    assert batched == expected


def test_multi_token_letters_are_refused(tokenizer):
    with pytest.raises(ValueError, match="single token"):
        letter_ids(tokenizer, ["Answer A"])


class EchoTask:
    """A generative task: the answer is correct when it equals the expected text."""

    eval_type = "generative"

    def __init__(self, expected: list[str]):
        self.items = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": e}]}
                      for i, e in enumerate(expected)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def evaluate(self, conversation, completion: str) -> bool:
        return completion == conversation["messages"][-1]["content"]


class Parrot(torch.nn.Module):
    """Always says 'blue' then ends: generation runs through the real engine and KV cache."""

    def __init__(self, tokenizer):
        super().__init__()
        self.config = GPTConfig(sequence_len=64, vocab_size=tokenizer.vocab_size, n_layer=1, n_head=1, n_kv_head=1, n_embd=64)
        self.script = [*tokenizer.encode("blue"), tokenizer.token_id("<|assistant_end|>")]
        self.start = tokenizer.token_id("<|assistant_start|>")
        self.vocab = tokenizer.vocab_size

    def forward(self, idx, targets=None, kv_cache=None):
        B, T = idx.shape
        kv_cache.insert_kv(0, torch.zeros(B, 1, T, 64), torch.zeros(B, 1, T, 64))
        if T > 1:
            self.generated = 0
        else:
            self.generated += 1
        logits = torch.zeros(B, T, self.vocab)
        logits[:, -1, self.script[min(self.generated, len(self.script) - 1)]] = 1.0
        return logits


def test_generative_scoring_uses_the_engine(tokenizer):
    task = EchoTask(["blue", "red", "blue", "green"])
    engine = Engine(Parrot(tokenizer), tokenizer)
    result = evaluate_generative(engine, tokenizer, task, max_new_tokens=10)
    assert result["accuracy"] == 0.5 and result["n"] == 4
    assert evaluate_generative(engine, tokenizer, task, max_examples=1)["accuracy"] == 1.0
    engine.model.rotary_len = 4  # prompts longer than the model's positions are counted wrong, not a crash
    short = evaluate_generative(engine, tokenizer, task)
    assert short["accuracy"] == 0.0 and short["prompt_too_long"] == 4


def test_bits_per_byte_of_a_uniform_model(tmp_path, tokenizer):
    """An untrained GPT (zero head) predicts uniformly: bpb = ln(V) / ln 2 * tokens / bytes."""
    from tasks.llm.eval.evaluate import bpb_on_shards
    from tasks.llm.data.shards import write_shards

    docs = [f"document {i}: the sky is blue and the grass is green." for i in range(200)]
    meta = write_shards(docs, tokenizer, tmp_path / "tokens", val_fraction=0.3)
    model = GPT(GPTConfig(sequence_len=32, vocab_size=tokenizer.vocab_size, n_layer=1, n_head=1, n_kv_head=1, n_embd=64))
    bpb = bpb_on_shards(model, str(tmp_path / "tokens"), seq_len=32, max_tokens=10_000, batch_size=2)
    expected = math.log2(tokenizer.vocab_size) / meta["bytes_per_token"]["val"]
    assert bpb == pytest.approx(expected, rel=0.1)


class PromptOracle(torch.nn.Module):
    """Knows the right answer token of every prompt (and prefers an unrelated token overall)."""

    def __init__(self, vocab_size: int, answer_token: dict[tuple[int, ...], int]):
        super().__init__()
        self.config = GPTConfig(sequence_len=2048, vocab_size=vocab_size, n_layer=1, n_head=1, n_kv_head=1, n_embd=64)
        self.vocab_size, self.answer_token = vocab_size, answer_token

    def forward(self, idx, targets=None, kv_cache=None):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.vocab_size)
        logits[:, :, 100] = 10.0
        for b in range(B):
            for t in range(T):
                token = self.answer_token.get(tuple(idx[b, : t + 1].tolist()))
                if token is not None:
                    logits[b, t, token] = 5.0
        return logits


def test_mmlu_and_arc_files_scored_through_evaluate_task(tmp_path, tokenizer):
    import json as _json

    from tasks.llm.data.datasets import build_task
    from tasks.llm.eval.evaluate import evaluate_task

    mmlu = tmp_path / "mmlu.jsonl"
    mmlu.write_text("".join(_json.dumps({"question": f"q{i}", "choices": ["w", "x", "y", "z"], "answer": i % 4,
                                         "subject": "toy"}) + "\n" for i in range(6)))
    arc = tmp_path / "arc.jsonl"  # ARC also uses digit labels
    arc.write_text("".join(_json.dumps({"question": f"q{i}", "answerKey": str(1 + i % 3),
                                        "choices": {"text": ["a", "b", "c"], "label": ["1", "2", "3"]}}) + "\n"
                           for i in range(5)))
    for task in (build_task("mmlu", path=mmlu), build_task("arc", path=arc)):
        items = [task[i] for i in range(len(task))]
        truth = {tuple(render_for_completion(tokenizer, c)): tokenizer.encode(c["answer"])[0] for c in items}
        result = evaluate_task(PromptOracle(tokenizer.vocab_size, truth), tokenizer, task, batch_size=4)
        assert result["accuracy"] == 1.0 and result["n"] == len(items)
        assert result["chance"] == pytest.approx(1 / len(items[0]["letters"]))
