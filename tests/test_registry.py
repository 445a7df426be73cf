"""Models in the MLflow registry: every stage's final model is logged and registered with a new version
per run, and `models:/NAME/VERSION` loads wherever a checkpoint folder does. Real SQLite store."""

from __future__ import annotations

import json

import pytest

from tasks.common import registry
from tasks.common.registry import RegistryError
from tasks.llm.checkpoint import load_model, read_meta, resolve_checkpoint
from tasks.llm.data import TokenStreamSource
from tasks.llm.train import run_training
from test_llm_train import tiny_cfg


@pytest.fixture()
def model_cache(tmp_path, monkeypatch):
    """Downloads go to this test's folder, not the checkout's .cache."""
    folder = tmp_path / "model-cache"
    monkeypatch.setattr(registry, "cache_root", lambda: folder)
    return folder


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    """Token shards with a real (tiny) tokenizer, so the registered model can read prompts."""
    from tasks.llm.shards import write_shards
    from tasks.llm.tokenizer import Tokenizer

    root = tmp_path_factory.mktemp("registry_tokens")
    docs = [f"What is {i} + {i + 1}? It is {2 * i + 1}. Spell the word: garden" for i in range(300)]
    write_shards(docs, Tokenizer.train(docs, vocab_size=300), root / "tokens", val_fraction=0.2)
    return root / "tokens"


def train(tokens, out, stage="pretrain", **kw):
    source = TokenStreamSource(4, 32, tokens_dir=str(tokens))
    cfg = tiny_cfg(steps=2, eval_every=0, checkpoint_every=0, **kw)
    return run_training(cfg, source, out_dir=out, stage=stage)


def versions(name: str) -> list[str]:
    from mlflow.tracking import MlflowClient

    return sorted(v.version for v in MlflowClient().search_model_versions(f"name = '{name}'"))


def test_each_run_registers_a_new_version_and_models_uri_loads(tokens, tmp_path, mlflow_store, model_cache):
    import mlflow

    first = train(tokens, tmp_path / "a")
    second = train(tokens, tmp_path / "b")
    assert (first["registered_model"], second["registered_model"]) == ("models:/seedflow-llm-pretrain/1",
                                                                       "models:/seedflow-llm-pretrain/2")
    assert versions("seedflow-llm-pretrain") == ["1", "2"]
    version = mlflow.MlflowClient().get_model_version("seedflow-llm-pretrain", "2")
    assert version.run_id == second["mlflow_run_id"]
    assert {k: version.tags[k] for k in ("stage", "mode", "precision")} == {"stage": "pretrain", "mode": "single",
                                                                            "precision": "fp32"}
    assert mlflow.get_run(second["mlflow_run_id"]).data.tags["registered_model"] == second["registered_model"]

    folder = resolve_checkpoint("models:/seedflow-llm-pretrain/1")
    assert folder.is_relative_to(model_cache / "seedflow-llm-pretrain" / "1")
    meta = read_meta("models:/seedflow-llm-pretrain/1")
    assert meta["mlflow_run_id"] == first["mlflow_run_id"]
    assert meta["tokenizer"].startswith(str(model_cache)) and json.loads(open(meta["tokenizer"]).read())
    model, _ = load_model("models:/seedflow-llm-pretrain/latest")
    trained, _ = load_model(second["model_dir"])
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), trained.state_dict().values()))
    assert resolve_checkpoint("models:/seedflow-llm-pretrain/1") == folder  # downloaded once, then reused


def test_chat_and_pyfunc_from_the_registry(tokens, tmp_path, mlflow_store, model_cache):
    import mlflow.pyfunc

    from tasks.llm.chat_session import ChatSession
    from tasks.llm.preflight import check_checkpoint

    train(tokens, tmp_path / "a")
    check_checkpoint("models:/seedflow-llm-pretrain/1", "--checkpoint")
    session = ChatSession.from_checkpoint("models:/seedflow-llm-pretrain/1", temperature=0.0, max_tokens=6)
    reply = "".join(session.reply("What is 1 + 2?"))
    assert reply == session.messages[-1]["content"]

    pyfunc = mlflow.pyfunc.load_model("models:/seedflow-llm-pretrain/1")
    assert [c.name for c in pyfunc.metadata.signature.inputs] == ["prompt"]
    answers = pyfunc.predict(["What is 1 + 2?", "Spell the word: garden"], params={"max_tokens": 6})
    assert len(answers) == 2 and answers[0] == reply and all(isinstance(a, str) for a in answers)


def test_later_stage_starts_from_a_registered_model(tokens, tmp_path, mlflow_store, model_cache):
    import mlflow

    first = train(tokens, tmp_path / "pre")
    source = TokenStreamSource(4, 32, tokens_dir=str(tokens))
    sft = run_training(tiny_cfg(steps=2, eval_every=0, checkpoint_every=0), source,
                       init_checkpoint="models:/seedflow-llm-pretrain/latest", out_dir=tmp_path / "sft", stage="sft")
    assert sft["registered_model"] == "models:/seedflow-llm-sft/1"
    run = mlflow.get_run(sft["mlflow_run_id"])
    assert run.data.tags["init_model"] == "models:/seedflow-llm-pretrain/latest"
    assert read_meta(sft["model_dir"])["tokenizer"] == read_meta("models:/seedflow-llm-pretrain/1")["tokenizer"]
    assert first["registered_model"] == "models:/seedflow-llm-pretrain/1"


def test_register_false_and_bench_runs_register_nothing(tokens, tmp_path, mlflow_store, model_cache):
    import mlflow

    logged = train(tokens, tmp_path / "a", register=False)
    assert "registered_model" not in logged and logged["model_uri"].startswith("models:/m-")
    bench = train(tokens, tmp_path / "b", stage="bench")
    assert "model_uri" not in bench
    assert mlflow.MlflowClient().search_registered_models() == []


@pytest.mark.parametrize("uri, message", [
    ("models:/seedflow-llm-pretrain/7", "seedflow-llm-pretrain has version\\(s\\) 1; use one of those"),
    ("models:/seedflow-llm-sft/1", "no registered model 'seedflow-llm-sft'; registered: seedflow-llm-pretrain"),
    ("models:/seedflow-llm-pretrain@champion", "seedflow-llm-pretrain has version\\(s\\) 1"),
    ("models:/seedflow-llm-pretrain", "write models:/NAME/VERSION"),
])
def test_a_missing_model_or_version_is_one_clear_line(tokens, tmp_path, mlflow_store, model_cache, uri, message):
    train(tokens, tmp_path / "a")
    with pytest.raises(RegistryError, match=message) as caught:
        resolve_checkpoint(uri)
    assert "\n" not in str(caught.value)
