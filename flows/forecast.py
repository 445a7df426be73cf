"""Prefect flow `forecast`: dataset x rate x model as Ray tasks, deep models tuned with Ray Tune."""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow, get_run_logger, task
from prefect_ray.context import remote_options

from flows.retry import RETRY_TRANSIENT
from tasks.common.config import load_config
from tasks.common.paths import project_root
from tasks.common.ray_runtime import task_runner
from tasks.forecast.config import ForecastConfig
from tasks.forecast.models import FitContext
from tasks.forecast.models.registry import DEEP_MODELS
from tasks.forecast.protocol import MinMaxScaler
from tasks.forecast.report import log_to_mlflow, write_outputs
from tasks.forecast.study import ComboResult, SeriesSpec, check_inputs, prepare, run_combo
from tasks.forecast.tuning import tune_deep


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
    return tune_deep(model, scaled, ctx, cfg.tune, name=f"{spec.dataset}_{spec.rate}_{model}", fixed=fixed)


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
def forecast_flow(overrides: dict[str, Any] | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """Run the load-prediction study; `overrides` are dotted params.yaml keys (e.g. {"rates": ["1h"]})."""
    logger = get_run_logger()
    cfg = load_config(ForecastConfig, "forecast", overrides)
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
