"""One (series, model) combination of the study: fit, walk forward, score.

Pure functions: no Prefect, Ray or MLflow here. The flow fans these out and logs the results.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.common.paths import data_dir, seeds_dir
from tasks.forecast.config import ForecastConfig
from tasks.forecast.metrics import all_metrics
from tasks.forecast.models import FitContext, make_model
from tasks.forecast.models.registry import DEEP_MODELS
from tasks.forecast.protocol import HORIZONS, SEASONS, Split, check_length, chronological_split, combine_walk_forward
from tasks.forecast.series import load_series
from tasks.forecast.synthetic import write_synthetic


@dataclass(frozen=True)
class SeriesSpec:
    dataset: str
    rate: str
    path: Path


@dataclass
class ComboResult:
    dataset: str
    rate: str
    model: str
    walk_forward: str
    metrics: dict[str, float]
    params: dict[str, Any]
    test_index: list[str]
    y_test: np.ndarray
    y_pred: np.ndarray
    model_bytes: bytes = field(repr=False, default=b"")

    def row(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "rate": self.rate, "model": self.model, **self.metrics,
                "walk_forward": self.walk_forward}


def resolve_series(cfg: ForecastConfig, explicit_data_dir: str | None = None) -> list[SeriesSpec]:
    """The study's files from the data folder, plus extra files; generated series when offline."""
    specs = []
    folder = data_dir(explicit_data_dir)
    load_dir = folder / "load" if folder and (folder / "load").is_dir() else None
    if load_dir is None:
        for path in write_synthetic(seeds_dir() / "load", list(cfg.rates)):
            specs.append(SeriesSpec("synthetic", path.stem.split("_")[-1], path))
    else:
        for dataset in cfg.datasets:
            for rate in cfg.rates:
                path = load_dir / f"{dataset}_{rate}.csv"
                if not path.is_file():
                    raise FileNotFoundError(f"series {dataset}_{rate} not found: {path}")
                specs.append(SeriesSpec(dataset, rate, path))
    for extra in cfg.series_files:
        path = Path(extra).expanduser().resolve()
        name, _, rate = path.stem.rpartition("_")
        if rate not in HORIZONS:
            raise ValueError(f"{path.name}: extra series must be named <name>_<rate> with rate in {list(HORIZONS)}")
        specs.append(SeriesSpec(name, rate, path))
    return specs


def prepare(spec: SeriesSpec, cfg: ForecastConfig) -> tuple[pd.Series, Split, int, int]:
    series = load_series(spec.path, fill_gaps=cfg.fill_gaps, nan_policy=cfg.nan_policy)
    split = chronological_split(len(series), cfg.train_fraction, cfg.val_fraction)
    horizon, season = HORIZONS[spec.rate], SEASONS[spec.rate]
    check_length(len(series), split, horizon, season)
    return series, split, horizon, season


def model_options(name: str, cfg: ForecastConfig, tuned: dict[str, Any] | None) -> dict[str, Any]:
    if name == "arima":
        return cfg.arima.model_dump()
    if name == "gbr":
        return cfg.gbr.model_dump()
    if name in DEEP_MODELS:
        return {"config": tuned or {}, **cfg.deep.model_dump()}
    if name == "ensemble":
        members = cfg.ensemble.members
        return {"members": members, "member_options": {m: model_options(m, cfg, None) for m in members}}
    return {}


def run_combo(spec: SeriesSpec, model_name: str, cfg: ForecastConfig, tuned: dict[str, Any] | None = None) -> ComboResult:
    """Fit on the training part, forecast from every test origin, score the combined forecast."""
    series, split, horizon, season = prepare(spec, cfg)
    y = series.to_numpy(dtype=float)
    ctx = FitContext(split=split, season=season, horizon=horizon, seed=cfg.seed)
    model = make_model(model_name, **model_options(model_name, cfg, tuned))

    start = time.perf_counter()
    model.fit(y[: split.n_train], ctx)
    fit_s = time.perf_counter() - start

    start = time.perf_counter()
    origins = np.arange(split.n_train, split.n)
    forecasts = model.forecast(y, origins, horizon)
    y_pred = combine_walk_forward(forecasts)
    predict_s = time.perf_counter() - start

    if not np.all(np.isfinite(y_pred)):
        raise FloatingPointError(f"{model_name} on {spec.dataset}_{spec.rate} produced non-finite forecasts")
    y_test = y[split.n_train :]
    metrics = {**all_metrics(y_test, y_pred, y[: split.n_train]), "fit_s": fit_s, "predict_s": predict_s}
    return ComboResult(
        dataset=spec.dataset,
        rate=spec.rate,
        model=model_name,
        walk_forward=model.walk_forward,
        metrics=metrics,
        params={"horizon": horizon, "season": season, "n_train": split.n_train, "n_test": split.n_test, **model.fitted_params},
        test_index=[str(t) for t in series.index[split.n_train :]],
        y_test=y_test,
        y_pred=y_pred,
        model_bytes=pickle.dumps(model),
    )

