"""The `llm_tokenize` flow end to end: real Prefect server, the task on real Ray, a real MLflow store."""

from __future__ import annotations

import json

import mlflow

from tasks.llm.data.shards import TokenShards
from tasks.llm.data.tokenizer import Tokenizer


def test_tokenize_flow_on_ray_logs_to_mlflow(shared_data, prefect_server, mlflow_store, tmp_path):
    from flows.llm.tokenize import llm_tokenize

    out_dir = tmp_path / "tokens"
    result = llm_tokenize(overrides={"corpus": [str(shared_data / "text" / "tinyshakespeare.txt")],
                                     "vocab_size": 512, "max_chars": 300_000,
                                     "out_dir": str(out_dir), "experiment": "llm-tokenize-test"})

    metrics = json.loads((tmp_path / "tokenize_metrics.json").read_text())
    assert metrics == result["metrics"] and metrics["vocab_size"] == 512
    train, val = TokenShards(out_dir, "train"), TokenShards(out_dir, "val")
    assert len(train) == metrics["train_tokens"] and len(val) == metrics["val_tokens"] > 0
    tok = Tokenizer.load(train.tokenizer_path)
    assert tok.decode(val.tokens[1:40].tolist()) in (shared_data / "text" / "tinyshakespeare.txt").read_text()

    mlflow.set_tracking_uri(mlflow_store)
    runs = mlflow.search_runs(experiment_names=["llm-tokenize-test"])
    assert list(runs["run_id"]) == [result["mlflow_run_id"]]
    assert runs["metrics.bytes_per_token"].item() == metrics["bytes_per_token"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result["mlflow_run_id"])}
    assert {"tokenizer.json", "meta.json"} <= artifacts
