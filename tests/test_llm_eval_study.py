"""The study flow end to end at tiny size: three arms x three stages on real Ray, Prefect and MLflow."""

from __future__ import annotations

import json

import pytest

from tasks.llm.shards import write_shards
from tasks.llm.datasets import build_task
from tasks.llm.tokenizer import Tokenizer


@pytest.fixture()
def tiny_tokens(tmp_path):
    texts = [build_task(n, "train", size=200)[i]["messages"][0]["content"] for n in ("addition", "spelling")
             for i in range(200)]
    docs = [" ".join(texts[i:i + 6]) for i in range(0, len(texts), 3)]
    tokenizer = Tokenizer.train(docs, vocab_size=320)
    write_shards(docs, tokenizer, tmp_path / "tokens", val_fraction=0.2)
    return tmp_path / "tokens"


def tiny_study(tmp_path, tokens) -> dict:
    train = {"steps": 4, "sequence_len": 32, "device_batch_size": 2, "diloco.inner_steps": 2, "eval_every": 0,
             "eval_tokens": 128, "checkpoint_every": 0, "log_every": 2}
    chat = {**train, "train_tasks": {"addition": 1.0, "spelling": 1.0}, "val_tasks": {"addition": 1.0},
            "task_options": {"addition": {"size": 30, "max_digits": 1}, "spelling": {"size": 30}}}
    return {
        "out_dir": str(tmp_path / "study"),
        "pretrain": {**train, "tokens_dir": str(tokens), "depth": 1},
        "midtrain": chat,
        "sft": chat,
        "eval": {"tokens_dir": str(tokens), "max_examples": 3, "max_new_tokens": 6, "bpb_tokens": 64,
                 "tasks": {"addition": {"size": 3, "max_digits": 1}, "spelling": {"size": 3}}},
    }


def test_study_flow_end_to_end(tmp_path, tiny_tokens, prefect_server, ray_local, mlflow_store):
    import mlflow

    from flows.llm import llm_study

    result = llm_study(overrides=tiny_study(tmp_path, tiny_tokens))
    numbers = result["numbers"]
    assert set(numbers) == {"ddp-ddp-ddp", "diloco-diloco-diloco", "diloco-ddp-ddp"}
    for arm, row in numbers.items():
        modes = arm.split("-")
        for stage, mode in zip(("pretrain", "midtrain", "sft"), modes):
            assert row[stage]["mode"] == mode
            assert row[stage]["bpb"] > 0
            assert 0 <= row[stage]["addition"] <= 1 and 0 <= row[stage]["spelling"] <= 1
            assert row[stage]["comm_bytes_per_worker"] > 0
    # DiLoCo syncs every 2 steps instead of every step: less communication per stage
    ddp, diloco = numbers["ddp-ddp-ddp"]["pretrain"], numbers["diloco-diloco-diloco"]["pretrain"]
    assert diloco["sync_rounds"] < ddp["sync_rounds"] and diloco["comm_bytes_per_worker"] < ddp["comm_bytes_per_worker"]
    # the two DiLoCo-pretrained arms share one pretraining run
    assert numbers["diloco-ddp-ddp"]["pretrain"] == numbers["diloco-diloco-diloco"]["pretrain"]

    report = (tmp_path / "study" / "report.md").read_text()
    assert "| ddp-ddp-ddp | sft | ddp |" in report and "comm MB/worker" in report
    assert json.loads((tmp_path / "study" / "metrics.json").read_text()) == json.loads(json.dumps(numbers))

    runs = mlflow.search_runs(experiment_names=["llm-study"])
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    assert len(parents) == 3 and parents["metrics.sft_bpb"].notna().all()
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert len(children) == 8  # 3 + 3 stage runs, + 2 for diloco-ddp-ddp (its pretrain is shared)


def test_report_card_numbers_and_table():
    from tasks.llm.study_report import card_numbers, markdown_card

    def stage(mode, comm, rounds):
        return {"mode": mode, "comm_bytes_per_worker": comm, "sync_rounds": rounds, "final_train_loss": 1.0,
                "wall_seconds": 10.0}

    def ev(bpb, acc):
        return {"bpb": bpb, "tasks": {"addition": {"accuracy": acc, "chance": 0.0, "n": 10, "seconds": 1}}}

    arms = {
        "ddp-ddp-ddp": {"stages": {s: stage("ddp", 100.0, 10) for s in ("pretrain", "midtrain", "sft")},
                        "evals": {"pretrain": ev(2.0, 0.0), "midtrain": ev(1.8, 0.3), "sft": ev(1.7, 0.6)}},
        "diloco-diloco-diloco": {"stages": {s: stage("diloco", 10.0, 1) for s in ("pretrain", "midtrain", "sft")},
                                 "evals": {"pretrain": ev(2.1, 0.0), "midtrain": ev(1.9, 0.2), "sft": ev(1.8, 0.5)}},
    }
    numbers = card_numbers(arms)
    assert numbers["ddp-ddp-ddp"]["comm_bytes_per_worker"] == 300.0
    assert numbers["diloco-diloco-diloco"]["comm_bytes_per_worker"] == 30.0
    assert numbers["diloco-diloco-diloco"]["sft"] == {
        "mode": "diloco", "bpb": 1.8, "addition": 0.5, "comm_bytes_per_worker": 10.0, "sync_rounds": 1,
        "train_loss": 1.0, "wall_seconds": 10.0}
    table = markdown_card(numbers, {"addition": 0.0})
    assert "| ddp-ddp-ddp | sft | ddp | 1.7000 | 0.600 | 0.00 | 10 |" in table
    assert "| diloco-diloco-diloco | 0.00 | 30.0 |" in table
