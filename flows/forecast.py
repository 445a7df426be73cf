"""The forecasting pipeline: Prefect flow `forecast`, `seedflow forecast run`, `seedflow bench forecast`, its demo.

Dataset x rate x model combinations run as Ray tasks; deep models are tuned with Ray Tune first.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import typer
from prefect import flow, get_run_logger, task
from prefect_ray.context import remote_options

from flows.options import DATA_DIR_OPTION, cli_overrides, comma_list, default, flow_overrides, set_option
from flows.runtime import RETRY_TRANSIENT, run_flow, task_runner
from tasks.common.config import load_config
from tasks.common.paths import project_root
from tasks.forecast.config import ForecastConfig, Rate
from tasks.forecast.models import FitContext
from tasks.forecast.models.catalog import DEEP_MODELS
from tasks.forecast.protocol import MinMaxScaler
from tasks.forecast.report import log_to_mlflow, write_outputs
from tasks.forecast.study import ComboResult, SeriesSpec, check_inputs, prepare, run_combo
from tasks.forecast.tuning import tune_deep

SECTION = "forecast"


@task(name="fit-and-forecast", **RETRY_TRANSIENT)
def fit_combo(spec: SeriesSpec, model: str, cfg: ForecastConfig, tuned: dict[str, Any] | None = None) -> ComboResult:
    import torch

    torch.set_num_threads(1)
    return run_combo(spec, model, cfg, tuned)


@task(name="tune-deep-model", **RETRY_TRANSIENT)
def tune_combo(spec: SeriesSpec, model: str, cfg: ForecastConfig) -> dict[str, Any]:
    prep = prepare(spec, cfg)
    train = prep.series.to_numpy(dtype=float)[: prep.split.n_train]
    ctx = FitContext(split=prep.split, season=prep.season, horizon=prep.horizon, seed=cfg.seed)
    scaled = MinMaxScaler.fit(train).transform(train)
    fixed = {"samples_per_epoch": cfg.deep.samples_per_epoch}
    return tune_deep(model, scaled, ctx, cfg.tune, name=f"{spec.dataset}_{spec.rate}_{model}",
                     storage=project_root() / cfg.out_dir / "ray_tune", fixed=fixed)


def log_inputs(logger: logging.Logger | logging.LoggerAdapter, specs: list[SeriesSpec]) -> None:
    """Say where the series come from and what loading changed, so no gap is handled silently."""
    generated = [spec for spec in specs if spec.generated]
    if generated:
        logger.warning("no datasets folder found (--data-dir, SEEDFLOW_DATA, ../shared/datasets): "
                       "using generated series under %s", generated[0].path.parent)
    for spec in specs:
        log = logger.warning if spec.report.dropped or spec.report.interpolated else logger.info
        log("series %s_%s (%s): %s", spec.dataset, spec.rate, spec.path, spec.report.summary())


@flow(name="forecast", task_runner=task_runner(), log_prints=True)
def forecast_flow(
    datasets: list[str] = default(SECTION, "datasets"),
    rates: list[Rate] = default(SECTION, "rates"),
    models: list[str] = default(SECTION, "models"),
    overrides: dict[str, Any] | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """The load-prediction study: every series x model, walk-forward scored, logged to MLflow.

    Args:
        datasets: series names in the data folder's load/ (e.g. taxi, wiki_en).
        rates: sampling rates among 5min, 15min, 1h.
        models: forecasters, e.g. last_day, holt_winters, gbr, gru.
        overrides: any other key of params.yaml `forecast`, dotted (e.g. {"tune.num_samples": 4}); wins over the fields above.
        data_dir: public datasets folder (default: SEEDFLOW_DATA, else ../shared/datasets).
    """
    logger = get_run_logger()
    cfg = load_config(ForecastConfig, SECTION, flow_overrides(overrides, datasets=datasets, rates=rates, models=models))
    specs = check_inputs(cfg, data_dir)  # the same refusals as the CLI's, before anything is trained
    log_inputs(logger, specs)
    classical = [m for m in cfg.models if m not in DEEP_MODELS]
    deep = [m for m in cfg.models if m in DEEP_MODELS]
    logger.info("forecast: %d series x %d models", len(specs), len(cfg.models))

    with remote_options(num_cpus=1):
        futures = [fit_combo.submit(spec, model, cfg) for spec in specs for model in classical]
    # Tuning runs here in the flow process (it holds no Ray CPU); its trials run on the cluster
    # alongside the classical tasks, so nothing deadlocks on a 2-core machine.
    for spec in specs:
        for model in deep:
            best = tune_combo(spec, model, cfg)
            with remote_options(num_cpus=1):
                futures.append(fit_combo.submit(spec, model, cfg, best))
    results = [future.result() for future in futures]

    out_dir = project_root() / cfg.out_dir
    stats = write_outputs(results, out_dir)
    run_id = log_to_mlflow(results, cfg, stats, out_dir, run_name=f"forecast-{len(specs)}series")
    logger.info("leaderboard: %s, MLflow parent run %s", out_dir / "leaderboard.csv", run_id)
    return {**stats, "leaderboard": str(out_dir / "leaderboard.csv"), "mlflow_run_id": run_id,
            "combos": [r.row() for r in results]}


FLOWS = [forecast_flow]
app = typer.Typer(help="Stream-load forecasting: the load-prediction study's protocol, classical and deep models.",
                  no_args_is_help=True)
SET_OPTION = set_option("tune.num_samples=4")


def _overrides(assignments: list[str] | None, datasets: str | None, rates: str | None, models: str | None) -> dict:
    return cli_overrides(assignments, datasets=comma_list(datasets), rates=comma_list(rates), models=comma_list(models))


def run_forecast(overrides: dict, data_dir: str | None) -> dict:
    """Check the config and every series here, then run the flow against a Prefect API."""
    check_inputs(load_config(ForecastConfig, SECTION, overrides), data_dir)
    return run_flow("flows.forecast:forecast_flow", overrides=overrides, data_dir=data_dir)


@app.command("run")
def run(
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
    from tasks.common.precision import hardware_tags

    overrides = _overrides(set_, datasets=datasets, rates=rates, models=models)
    overrides.setdefault("out_dir", "results/bench/forecast")
    start = time.perf_counter()
    result = run_forecast(overrides, data_dir)
    keys = ("dataset", "rate", "model", "smape", "mae", "fit_s", "predict_s")
    out = {
        "hardware": hardware_tags(),
        "combos": [{k: row[k] for k in keys} for row in result["combos"]],
        "mean_smape": result["mean_smape"],
        "best_model_counts": result["best_model_counts"],
        "wall_s": round(time.perf_counter() - start, 1),
    }
    for key in ("beats_study_best", "compared_with_study"):
        if key in result:
            out[key] = result[key]
    print(json.dumps(out))


BENCHES = {"forecast": bench}


def demo(data_dir: str | None) -> str:
    """Small forecast run with the `demo.forecast` overrides from params.yaml."""
    from tasks.common.config import read_params

    overrides = read_params().get("demo", {}).get("forecast", {})
    result = run_forecast(overrides, data_dir)
    return f"forecast leaderboard: {result['leaderboard']} (MLflow experiment 'forecast', run {result['mlflow_run_id']})"
