"""Chat rendering with loss masks, and the midtraining / SFT batch sources."""

from __future__ import annotations

import pickle

import pytest
import torch

from tasks.llm.data.chat_format import ChatFormatError, render_conversation, render_for_completion
from tasks.llm.data.chat_batches import PackedChatSource, SFTSource, source_from_chat_spec
from tasks.llm.data.corpus import generate_corpus
from tasks.llm.data.datasets import Addition, Spelling, TaskMixture
from tasks.llm.data.tokenizer import Tokenizer

TOOL_CHAT = {"messages": [
    {"role": "user", "content": "What is 12*3?"},
    {"role": "assistant", "content": [
        {"type": "text", "text": "Let me compute "},
        {"type": "python", "text": "12*3"},
        {"type": "python_output", "text": "36"},
        {"type": "text", "text": " so 36."},
    ]},
    {"role": "user", "content": "Thanks"},
    {"role": "assistant", "content": "Welcome"},
]}


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Tokenizer:
    text = generate_corpus(30_000) + " What is 12*3? Let me compute so Thanks Welcome"
    tok = Tokenizer.train([text], 400)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(path)
    tok.path = str(path)
    return tok


def test_render_mask_trains_on_assistant_and_tool_call_not_output(tok):
    ids, mask = render_conversation(tok, TOOL_CHAT)
    t, enc = tok.token_id, tok.encode
    expected = [  # (tokens, mask) in order
        ([tok.bos_id, t("<|user_start|>"), *enc("What is 12*3?"), t("<|user_end|>"), t("<|assistant_start|>")], 0),
        (enc("Let me compute "), 1),
        ([t("<|python_start|>"), *enc("12*3"), t("<|python_end|>")], 1),
        ([t("<|output_start|>"), *enc("36"), t("<|output_end|>")], 0),
        ([*enc(" so 36."), t("<|assistant_end|>")], 1),
        ([t("<|user_start|>"), *enc("Thanks"), t("<|user_end|>"), t("<|assistant_start|>")], 0),
        ([*enc("Welcome"), t("<|assistant_end|>")], 1),
    ]
    assert ids == [i for toks, _ in expected for i in toks]
    assert mask == [m for toks, m in expected for _ in toks]
    short_ids, short_mask = render_conversation(tok, TOOL_CHAT, max_tokens=7)
    assert short_ids == ids[:7] and short_mask == mask[:7]


def test_system_message_folds_into_first_user_turn(tok):
    with_system = {"messages": [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    folded = {"messages": [{"role": "user", "content": "Be brief.\n\nHi"}, {"role": "assistant", "content": "Yo"}]}
    assert render_conversation(tok, with_system) == render_conversation(tok, folded)


def test_render_for_completion_primes_assistant(tok):
    prompt = render_for_completion(tok, {"messages": TOOL_CHAT["messages"][:4]})
    full, _ = render_conversation(tok, {"messages": TOOL_CHAT["messages"][:3]})
    assert prompt == full + [tok.token_id("<|assistant_start|>")]
    assert render_for_completion(tok, {"messages": TOOL_CHAT["messages"][:3]}) == prompt


@pytest.mark.parametrize("conversation, message", [
    ({"messages": []}, "no messages"),
    ({"msgs": []}, "'messages' list"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "expected 'user'"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "expected 'assistant'"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}, "user content must be a string"),
    ({"messages": [{"role": "user", "content": "a"},
                   {"role": "assistant", "content": [{"type": "shell", "text": "ls"}]}]}, "must be"),
])
def test_bad_conversations(tok, conversation, message):
    with pytest.raises(ChatFormatError, match=message):
        render_conversation(tok, conversation)


def _sources(tok, **kw):
    train = TaskMixture([Addition("train", 60), Spelling("train", 60)], [1.0, 1.0], seed=1)
    val = Addition("test", 40)
    common = dict(train=train, val=val, tokenizer_path=tok.path, batch_size=3, seq_len=32, seed=5)
    return PackedChatSource(**common, **kw), SFTSource(**common)


def test_packed_source_resumes_exactly_and_ranks_are_disjoint(tok):
    packed, _ = _sources(tok)
    run = packed.batches(0, 2)
    batches = [next(run) for _ in range(24)]  # crosses an epoch of this rank's 60 conversations
    assert batches[-1][2]["epoch"] >= 1
    for k in (2, 19):
        resumed = packed.batches(0, 2, batches[k][2])
        for x, y, pos in batches[k + 1: k + 4]:
            rx, ry, rpos = next(resumed)
            assert torch.equal(rx, x) and torch.equal(ry, y) and rpos == pos
    x, y, _ = batches[0]
    assert torch.equal(x.flatten()[1:], y.flatten()[:-1])  # a shifted stream, every token trained
    assert set(packed.order(0, 0, 2)).isdisjoint(packed.order(0, 1, 2))
    assert sorted(packed.order(0, 0, 2) + packed.order(0, 1, 2)) == list(range(120))
    assert packed.order(0, 0, 2) != packed.order(1, 0, 2)  # reshuffled per epoch


def test_packed_source_with_mask_ignores_prompts(tok):
    packed, _ = _sources(tok, use_mask=True)
    x, y, _ = next(packed.batches(0, 1))
    user_start = tok.token_id("<|user_start|>")
    assert (y == -1).any() and (y != -1).any()
    assert not (y == user_start).any()  # user turns are never targets


def test_sft_source_pads_and_masks(tok):
    _, sft = _sources(tok)
    x, y, pos = next(sft.batches(1, 2))
    assert x.shape == y.shape and x.shape[0] == 3 and x.shape[1] <= 32
    for row_x, row_y, index in zip(x, y, sft.order(0, 1, 2)[:3]):
        ids, mask = render_conversation(tok, sft.train[index], 33)
        n = len(ids) - 1
        assert row_x[:n].tolist() == ids[:-1]
        assert row_y[:n].tolist() == [t if m else -1 for t, m in zip(ids[1:], mask[1:])]
        assert (row_y[n:] == -1).all()
        assert tok.decode([t for t in row_y.tolist() if t >= 0]).endswith("<|assistant_end|>")
    assert pos == {"epoch": 0, "cursor": 3}
    again = next(sft.batches(1, 2, pos))
    following = list(zip(range(2), sft.batches(1, 2)))[1][1]
    assert torch.equal(again[0], following[0]) and torch.equal(again[1], following[1])
    padded = SFTSource(**{**sft.__dict__, "_tok": None, "pad_to_seq_len": True})
    assert next(padded.batches(0, 1))[0].shape == (3, 32)


def test_val_batches_and_pickling(tok):
    packed, sft = _sources(tok)
    val = list(packed.val_batches(200))
    assert len(val) == 3 and val[0][0].shape == (3, 32)  # 3 x 96 tokens >= 200
    assert all((y >= 0).any() for _, y in sft.val_batches(10_000))
    copy = pickle.loads(pickle.dumps(packed))
    assert copy._tok is None
    assert torch.equal(next(copy.batches(0, 1))[0], next(packed.batches(0, 1))[0])
    assert packed.token_bytes().shape == (tok.vocab_size,)


def test_source_spec_and_bad_settings(tok):
    spec = {"kind": "sft", "tokenizer": tok.path, "batch_size": 2, "seq_len": 16, "seed": 0,
            "train": {"addition": 1.0}, "val": {"addition": 1.0}, "options": {"addition": {"size": 10}}}
    source = source_from_chat_spec(spec)
    assert isinstance(source, SFTSource) and len(source.train) == 10
    with pytest.raises(ValueError, match="kind"):
        source_from_chat_spec({**spec, "kind": "tokens"})
    with pytest.raises(FileNotFoundError, match="tokenizer file"):
        source_from_chat_spec({**spec, "tokenizer": "/nonexistent/tok.json"})
    with pytest.raises(ValueError, match="cannot feed"):
        next(source.batches(0, 11))


def test_visualize_and_tasks_command(tok):
    from typer.testing import CliRunner

    from flows.cli import build_app
    from tasks.llm.data.chat_format import visualize

    app = build_app()
    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    shown = visualize(tok, *render_conversation(tok, chat))
    assert shown == "[<|bos|><|user_start|>Hi<|user_end|><|assistant_start|>]Yo<|assistant_end|>"
    result = CliRunner().invoke(app, ["llm", "tasks", "spelling", "--n", "1", "--tokenizer", tok.path])
    assert result.exit_code == 0, result.output
    assert "spelling: 10000 examples" in result.output and "<|assistant_start|>]" in result.output
    listing = CliRunner().invoke(app, ["llm", "tasks"])
    assert all(name in listing.output for name in ("gsm8k", "humaneval", "mmlu", "arc", "addition", "counting"))
