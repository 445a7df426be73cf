"""The `logs` flow end to end on BGL_2k, and on a log whose truth has no anomaly: real Prefect
server, real Ray, real MLflow store."""

from __future__ import annotations

import json

import pandas as pd

from tasks.common.precision import resolve_precision
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
    # the precision PULL actually ran in, and the hardware that chose it, travel with every figure
    used = resolve_precision("auto")
    assert parent["params.pull.precision"] == "auto" and parent["params.pull.precision_used"] == used
    assert parent["tags.cpu"] and child["tags.cpu"] == parent["tags.cpu"] and child["params.compute_precision"] == used
    assert metrics["pull_precision"] == {"requested": "auto", "used": used} and metrics["hardware"]["cpu"] == parent["tags.cpu"]
    pull_rows = [r for r in result["rows"] if r["model"] in ("pull", "loglab")]
    assert pull_rows and all(r["info"]["precision"] == used for r in pull_rows)
    [version] = mlflow.MlflowClient().search_model_versions("name = 'seedflow-logs-bgl_2k'")  # the best detector
    assert version.tags["f1"] == f"{table['f1'].max():.4f}" and version.run_id in set(runs["run_id"])


def test_logs_flow_without_labelled_anomalies_skips_and_says_so(prefect_server, ray_local, mlflow_store, tmp_path):
    """Thunderbird_2k-like: labelled, no anomaly, real failure windows from an incidents file.
    The other models still run; `supervised` is skipped and P/R/F1 are blank, each with its reason."""
    import mlflow

    from flows.logs import logs_flow
    from test_logs_checks import thunderbird

    log, incidents = thunderbird(tmp_path / "tbird.log", lines=300), tmp_path / "incidents.csv"
    incidents.write_text("start,end\n1131566500,1131566520\n")
    out = tmp_path / "logs"
    overrides = {"datasets": [{"name": "tbird", "format": "thunderbird", "path": str(log), "incidents": str(incidents)}],
                 "run": ["tbird"], "window_sizes": [0], "models": ["pca", "invariants", "supervised"],
                 "out_dir": str(out), "experiment": "logs-gaps"}
    result = logs_flow(overrides=overrides)

    table = pd.read_csv(out / "results.csv").set_index("model")
    assert table["f1"].isna().all()
    assert table.loc["supervised", "note"].startswith("skipped: no labelled anomaly in the train part")
    assert table.loc["pca", "note"] == table.loc["invariants", "note"] == "P/R/F1 undefined: no labelled anomaly in the test part"
    assert result["best"] == [] and set(result["parse"]["tbird"]["label_gaps"]) == {"supervised", "metrics"}
    trained = [r for r in result["rows"] if r["model"] != "supervised"]
    assert all(r["train_s"] >= 0 and r["window_share"] > 0 for r in trained)
    assert mlflow.MlflowClient().search_registered_models() == []  # no valid F1: no best detector to register
