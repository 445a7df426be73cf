"""The `logs` flow end to end on BGL_2k: real Prefect server, real Ray, real MLflow store."""

from __future__ import annotations

import json

import pandas as pd

from tasks.logs.config import MODELS


def test_logs_flow_bgl_2k(shared_data, prefect_server, ray_local, mlflow_store, tmp_path):
    import mlflow

    from flows.logs import logs_flow

    out = tmp_path / "logs"
    overrides = {"run": ["bgl_2k"], "window_sizes": [0, 60], "out_dir": str(out), "experiment": "logs-test",
                 "pull.epochs": 4, "pull.epochs_next": 2, "pull.max_rounds": 2, "deeplog.epochs": 1}
    result = logs_flow(overrides=overrides, data_dir=str(shared_data))

    table = pd.read_csv(out / "results.csv")
    assert len(table) == 2 * len(MODELS)
    assert set(table["model"]) == set(MODELS)
    assert table[["precision", "recall", "f1"]].apply(lambda c: c.between(0, 1)).all().all()
    parsed = pd.read_parquet(out / "parsed" / "bgl_2k.parquet")
    assert len(parsed) == 2000 and int(parsed["label"].sum()) == 143
    assert {"timestamp", "node", "template_id", "template", "tokens", "label"} <= set(parsed.columns)
    assert (out / "parsed" / "bgl_2k.drain3").is_file()
    stats = json.loads((out / "parsed" / "bgl_2k_stats.json").read_text())
    assert stats["malformed"] == 0 and stats["templates"] > 50
    assert (out / "plots" / "bgl_2k_w0_pr.png").stat().st_size > 1000
    assert (out / "plots" / "bgl_2k_w60_pull_hist.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parse"]["bgl_2k"]["lines"] == 2000

    runs = mlflow.search_runs(experiment_names=["logs-test"])
    assert len(runs) == 1 + 2 * len(MODELS)  # parent + one per (window, model)
    child = runs[runs["tags.mlflow.runName"] == "bgl_2k-w0-pull"].iloc[0]
    assert 0 <= child["metrics.f1"] <= 1
    parent = runs[runs["run_id"] == result["mlflow_run_id"]].iloc[0]
    assert parent["params.datasets"] == "bgl_2k"
