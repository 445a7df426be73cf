"""Engine: KV-cache generation equals full recomputation; the calculator tool is forced in."""

from __future__ import annotations

import pytest
import torch

from tasks.llm.eval.calculator import calculate
from tasks.llm.eval.engine import Engine
from tasks.llm.model.gpt import GPT, GPTConfig
from tasks.llm.data.tokenizer import Tokenizer

TEXT = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
        "the slings and arrows of outrageous fortune. 12 + 34 = 46, 7 * 8 = 56. ") * 20


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train([TEXT], vocab_size=320)


def random_gpt(vocab_size: int, n_kv_head: int = 2, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(sequence_len=64, vocab_size=vocab_size, n_layer=2, n_head=2, n_kv_head=n_kv_head, n_embd=64))
    with torch.no_grad():  # nanochat zero-inits the head and output projections; randomise them
        model.lm_head.weight.normal_(0, 0.5)
        for block in model.transformer.h:
            block.attn.c_proj.weight.normal_(0, 0.1)
            block.mlp.c_proj.weight.normal_(0, 0.1)
    return model.eval()


@torch.no_grad()
def greedy_without_cache(model: GPT, tokens: list[int], max_tokens: int, stop: set[int]) -> list[int]:
    ids = list(tokens)
    out = []
    for _ in range(max_tokens):
        token = int(model(torch.tensor([ids]))[0, -1].argmax())
        if token in stop:
            break
        out.append(token)
        ids.append(token)
    return out


@pytest.mark.parametrize("n_kv_head", [2, 1])  # multi-head and grouped-query attention
def test_kv_cache_generation_equals_recomputation(tokenizer, n_kv_head):
    model = random_gpt(tokenizer.vocab_size, n_kv_head)
    engine = Engine(model, tokenizer)
    stop = {tokenizer.token_id("<|assistant_end|>"), tokenizer.bos_id}
    for prompt in ("To be, or not", "the slings and arrows of", "12 + 34"):
        tokens = [tokenizer.bos_id, *tokenizer.encode(prompt)]
        cached, masks = engine.generate_batch(tokens, num_samples=2, max_tokens=40)
        reference = greedy_without_cache(model, tokens, 40, stop)
        assert len(reference) > 5
        assert cached[0] == reference and cached[1] == reference
        assert set(masks[0]) == {1}


def test_sampling_is_seeded_and_top_k_bounded(tokenizer):
    model = random_gpt(tokenizer.vocab_size)
    engine = Engine(model, tokenizer)
    tokens = [tokenizer.bos_id, *tokenizer.encode("whether 'tis")]
    a, _ = engine.generate_batch(tokens, num_samples=3, max_tokens=20, temperature=1.0, top_k=5, seed=1)
    b, _ = engine.generate_batch(tokens, num_samples=3, max_tokens=20, temperature=1.0, top_k=5, seed=1)
    assert a == b and len({tuple(x) for x in a}) > 1  # reproducible, yet the samples differ
    with torch.no_grad():
        first = model(torch.tensor([tokens]))[0, -1]
    allowed = set(torch.topk(first, 5).indices.tolist())
    assert all(x[0] in allowed for x in a)
    top1, _ = engine.generate_batch(tokens, num_samples=2, max_tokens=20, temperature=1.0, top_k=1, seed=3)
    assert top1[0] == top1[1] == engine.generate_batch(tokens, max_tokens=20)[0][0]


class ScriptedModel(torch.nn.Module):
    """Stands in for the GPT: always predicts the next token of a fixed script (engine under test)."""

    def __init__(self, script: list[int], vocab_size: int, prompt_len: int):
        super().__init__()
        self.config = GPTConfig(sequence_len=64, vocab_size=vocab_size, n_layer=1, n_head=1, n_kv_head=1, n_embd=64)
        self.script, self.vocab_size, self.prompt_len = script, vocab_size, prompt_len
        self.fed: list[list[int]] = []

    def forward(self, idx, targets=None, kv_cache=None):
        B, T = idx.shape
        if T > 1:
            self.fed = [[] for _ in range(B)]
        elif len(self.fed) != B:
            self.fed = [list(self.fed[0]) for _ in range(B)]
        logits = torch.zeros(B, T, self.vocab_size)
        for b in range(B):
            self.fed[b] += idx[b].tolist()
            step = len(self.fed[b]) - self.prompt_len
            logits[b, -1, self.script[min(step, len(self.script) - 1)]] = 1.0
        kv_cache.insert_kv(0, torch.zeros(B, 1, T, 64), torch.zeros(B, 1, T, 64))
        return logits


def test_calculator_output_is_forced(tokenizer):
    t = tokenizer.token_id
    expr, wrong = tokenizer.encode("12*34"), tokenizer.encode("99")
    end = t("<|assistant_end|>")
    # the model "thinks" the tool says 99; the engine must force the real result 408 instead
    script = [t("<|python_start|>"), *expr, t("<|python_end|>"), t("<|output_start|>"), *wrong, t("<|output_end|>"),
              end, end, end]
    prompt = [tokenizer.bos_id, t("<|assistant_start|>")]
    engine = Engine(ScriptedModel(script, tokenizer.vocab_size, len(prompt)), tokenizer)
    ids, masks = engine.generate_batch(prompt, max_tokens=30)
    text = tokenizer.decode(ids[0])
    assert "<|output_start|>408<|output_end|>" in text and "99" not in text
    forced = [tok for tok, m in zip(ids[0], masks[0]) if m == 0]
    assert forced == [t("<|output_start|>"), *tokenizer.encode("408"), t("<|output_end|>")]


def test_calculator_is_restricted():
    assert calculate("48/2") == "24" and calculate("1,000*3") == "3000" and calculate("10/4") == "2.5"
    assert calculate('"strawberry".count("r")') == "3"
    for hostile in ('__import__("os").system("ls")', "9**9**9", "1/0", "open('x')", "[1]*10**9", "x+1", ""):
        assert calculate(hostile) is None, hostile


def test_bad_generation_requests(tokenizer):
    engine = Engine(random_gpt(tokenizer.vocab_size), tokenizer)
    with pytest.raises(ValueError, match="non-empty"):
        list(engine.generate([]))
    with pytest.raises(ValueError, match="temperature"):
        list(engine.generate([1], temperature=-1))
    with pytest.raises(ValueError, match="no room"):
        list(engine.generate([1] * 700))
