"""The eval stage on a real (tiny, untrained) checkpoint: outputs, metrics, HumanEval via the sandbox, chat."""

from __future__ import annotations

import json

import pytest
import torch

from tasks.llm.train.checkpoint import CheckpointError, save_checkpoint
from tasks.llm.config import EvalConfig
from tasks.llm.eval.stage import evaluate_checkpoint, load_for_inference, write_eval_outputs
from tasks.llm.model.gpt import GPT, GPTConfig
from tasks.llm.data.shards import write_shards
from tasks.llm.data.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalstage")
    docs = [f"What is {i} + {i + 1}? It is {2 * i + 1}. Spell the word: garden" for i in range(300)]
    tokenizer = Tokenizer.train(docs, vocab_size=300)
    write_shards(docs, tokenizer, root / "tokens", val_fraction=0.2)
    torch.manual_seed(0)
    model = GPT(GPTConfig(sequence_len=64, vocab_size=tokenizer.vocab_size, n_layer=1, n_head=1, n_kv_head=1, n_embd=64))
    save_checkpoint(root / "run" / "model", model, {}, {"tokenizer": str(root / "tokens" / "tokenizer.json"),
                                                        "stage": "sft", "mode": "ddp", "step": 0})
    return root


def test_evaluate_checkpoint_writes_metrics(checkpoint, shared_data):
    cfg = EvalConfig(tokens_dir=str(checkpoint / "tokens"), max_examples=2, max_new_tokens=4, bpb_tokens=256,
                     precision="fp32", tasks={"addition": {"size": 2}, "spelling": {"size": 2}, "humaneval": {"limit": 2}})
    result = evaluate_checkpoint(cfg, str(checkpoint / "run"), data_dir=str(shared_data))
    assert result["stage"] == "sft" and result["bpb"] > 0
    assert set(result["tasks"]) == {"addition", "spelling", "humaneval"}
    assert all(0 <= r["accuracy"] <= 1 and r["n"] == 2 for r in result["tasks"].values())
    assert result["tasks"]["humaneval"]["accuracy"] == 0.0  # an untrained model writes no working code
    paths = write_eval_outputs(result, checkpoint / "eval")
    metrics = json.loads(paths["metrics"].read_text())
    assert set(metrics) == {"bpb", "addition_accuracy", "spelling_accuracy", "humaneval_accuracy"}
    assert "| humaneval | 0.000 |" in paths["report"].read_text()


def test_checkpoint_without_tokenizer_is_a_clear_error(tmp_path):
    model = GPT(GPTConfig(sequence_len=16, vocab_size=300, n_layer=1, n_head=1, n_kv_head=1, n_embd=64))
    save_checkpoint(tmp_path / "model", model, {}, {"tokenizer": str(tmp_path / "missing.json")})
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        load_for_inference(str(tmp_path))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_for_inference(str(tmp_path / "nothing"))


def test_unknown_task_is_refused(checkpoint):
    cfg = EvalConfig(tokens_dir=str(checkpoint / "tokens"), tasks={"astrology": {}}, bpb_tokens=0)
    with pytest.raises(ValueError, match="unknown task 'astrology'"):
        evaluate_checkpoint(cfg, str(checkpoint / "run"))


def test_chat_session_streams_and_remembers(checkpoint):
    from tasks.llm.eval.chat_session import ChatSession

    session = ChatSession.from_checkpoint(str(checkpoint / "run"), temperature=0.0, max_tokens=8)
    pieces = list(session.reply("What is 1 + 2?"))
    assert "".join(pieces) == session.messages[-1]["content"]
    list(session.reply("And 2 + 3?"))
    assert [m["role"] for m in session.messages] == ["user", "assistant", "user", "assistant"]
    session.clear()
    assert session.messages == []
