"""The forecast flow end to end: real Prefect server, real Ray, Ray Tune, real MLflow store."""

import json

import mlflow
import pandas as pd


def test_forecast_flow_on_ray_end_to_end(shared_data, prefect_server, mlflow_store, tmp_path):
    from flows.forecast import forecast_flow

    out_dir = tmp_path / "forecast"
    overrides = {
        "datasets": ["taxi"],
        "rates": ["1h"],
        "models": ["last_observed", "holt_winters", "gbr", "gru"],
        "out_dir": str(out_dir),
        "experiment": "forecast-test",
        "tune.num_samples": 2,
        "tune.max_epochs": 3,
        "deep.max_epochs": 4,
    }
    result = forecast_flow(overrides=overrides)

    board = pd.read_csv(out_dir / "leaderboard.csv")
    assert set(board["model"]) == {"last_observed", "holt_winters", "gbr", "gru"}
    assert board.loc[board["model"] == "last_observed", "smape"].item() == __import__("pytest").approx(5.1814, abs=1e-3)
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["n_combos"] == 1 and set(metrics["mean_smape"]) == set(board["model"])

    mlflow.set_tracking_uri(mlflow_store)
    runs = mlflow.search_runs(experiment_names=["forecast-test"])
    children = runs[runs["tags.mlflow.parentRunId"] == result["mlflow_run_id"]]
    assert len(children) == 4
    assert set(children["tags.model"]) == set(board["model"])
    client = mlflow.MlflowClient()
    gru_run = children[children["tags.model"] == "gru"]["run_id"].item()
    artifacts = {a.path for a in client.list_artifacts(gru_run)}
    assert {"forecast_vs_actual.png", "model"} <= artifacts
    [version] = client.search_model_versions("name = 'seedflow-forecast-taxi_1h'")  # the best of the series
    assert version.tags["smape"] == f"{board['smape'].min():.4f}" and version.tags["model"] in set(board["model"])
