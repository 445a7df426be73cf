"""`seedflow forecast`, `seedflow bench forecast` and the forecasting part of `seedflow demo`."""

from __future__ import annotations

import json
import time

import typer

from flows.runner import run_flow
from tasks.common.cli_options import DATA_DIR_OPTION, SET_OPTION, cli_overrides, comma_list


def _overrides(assignments: list[str] | None, datasets: str | None, rates: str | None, models: str | None) -> dict:
    return cli_overrides(assignments, datasets=comma_list(datasets), rates=comma_list(rates), models=comma_list(models))


def run_forecast(overrides: dict, data_dir: str | None) -> dict:
    from tasks.common.config import load_config
    from tasks.forecast.config import ForecastConfig
    from tasks.forecast.study import check_inputs

    check_inputs(load_config(ForecastConfig, "forecast", overrides), data_dir)
    return run_flow("flows.forecast:forecast_flow", overrides=overrides, data_dir=data_dir)


def forecast(
    datasets: str = typer.Option(None, help="Comma-separated datasets, e.g. taxi,wiki_en (default: params.yaml)."),
    rates: str = typer.Option(None, help="Comma-separated rates among 5min,15min,1h."),
    models: str = typer.Option(None, help="Comma-separated models, e.g. last_day,holt_winters,gru."),
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Run the stream-load forecasting study (Prefect flow `forecast` on Ray, logged to MLflow)."""
    result = run_forecast(_overrides(set_, datasets=datasets, rates=rates, models=models), data_dir)
    typer.echo(json.dumps({k: result[k] for k in ("n_combos", "mean_smape", "leaderboard", "mlflow_run_id")}, indent=2))


def bench(
    datasets: str = typer.Option(None, help="Subset of datasets (default: all nine)."),
    rates: str = typer.Option(None, help="Subset of rates (default: all three)."),
    models: str = typer.Option(None, help="Subset of models (default: all)."),
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Run the whole study (27 series x all models) and print one JSON object as the last line."""
    overrides = _overrides(set_, datasets=datasets, rates=rates, models=models)
    overrides.setdefault("out_dir", "results/bench/forecast")
    start = time.perf_counter()
    result = run_forecast(overrides, data_dir)
    keys = ("dataset", "rate", "model", "smape", "mae", "fit_s", "predict_s")
    out = {
        "combos": [{k: row[k] for k in keys} for row in result["combos"]],
        "mean_smape": result["mean_smape"],
        "best_model_counts": result["best_model_counts"],
        "wall_s": round(time.perf_counter() - start, 1),
    }
    for key in ("beats_study_best", "compared_with_study"):
        if key in result:
            out[key] = result[key]
    print(json.dumps(out))


def demo(data_dir: str | None) -> str:
    """Small forecast run with the `demo.forecast` overrides from params.yaml."""
    from tasks.common.config import read_params

    overrides = read_params().get("demo", {}).get("forecast", {})
    result = run_forecast(overrides, data_dir)
    return f"forecast leaderboard: {result['leaderboard']} (MLflow experiment 'forecast', run {result['mlflow_run_id']})"
