"""The `llm_pretrain` Prefect flow end to end: real token shards, real Prefect server, Ray workers, MLflow."""

from __future__ import annotations


def test_llm_pretrain_flow_diloco_on_shards(tmp_path, monkeypatch, mlflow_store, prefect_server):
    import mlflow

    from flows.llm import llm_pretrain
    from tasks.llm.data.shards import write_shards
    from tasks.llm.data.tokenizer import Tokenizer

    docs = [f"line {i}: to be or not to be, that is the question. " * 4 for i in range(300)]
    write_shards(docs, Tokenizer.train(docs, vocab_size=320), tmp_path / "tokens", val_fraction=0.1)
    summary = llm_pretrain(overrides={
        "tokens_dir": str(tmp_path / "tokens"), "out_dir": str(tmp_path / "run"), "mode": "diloco", "workers": 2,
        "depth": 1, "sequence_len": 32, "device_batch_size": 4, "steps": 20, "diloco.inner_steps": 10,
        "threads_per_worker": 1, "eval_every": 10, "eval_tokens": 256, "checkpoint_every": 10, "compile": False,
        "experiment": "llm-flow-test"})
    assert summary["sync_rounds"] == 2 and summary["val_bpb"] > 0
    assert summary["comm_bytes_per_worker"] == (2 + 1) * 4 * summary["n_params"]  # 2 pseudo-gradients up, 1 update down
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    runs = mlflow.search_runs(experiment_names=["llm-flow-test"])
    assert runs.loc[0, "tags.mode"] == "diloco" and runs.loc[0, "metrics.sync_rounds"] == 2
