"""One (series, model) combination of the study: fit, walk forward, score.

Pure functions: no Prefect, Ray or MLflow here. The flow fans these out and logs the results.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.common.errors import InputError
from tasks.common.paths import data_dir as find_data_dir
from tasks.common.paths import seeds_dir
from tasks.forecast.config import ForecastConfig
from tasks.forecast.metrics import all_metrics
from tasks.forecast.models import FitContext, make_model
from tasks.forecast.models.catalog import DEEP_MODELS
from tasks.forecast.protocol import HORIZONS, SEASONS, Split, check_length, chronological_split, combine_walk_forward
from tasks.forecast.series import SUFFIXES, LoadReport, SeriesError, read_series, series_stem
from tasks.forecast.synthetic import write_synthetic


@dataclass(frozen=True)
class SeriesSpec:
    dataset: str
    rate: str
    path: Path
    generated: bool = False  # the project's own series, used because no datasets folder exists
    report: LoadReport | None = None  # what loading changed; set by check_inputs


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
    loading: dict[str, int] = field(default_factory=dict)  # steps filled / dropped / interpolated
    model_bytes: bytes = field(repr=False, default=b"")

    def row(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "rate": self.rate, "model": self.model, **self.metrics,
                "walk_forward": self.walk_forward, **self.loading}


@dataclass(frozen=True)
class Prepared:
    series: pd.Series
    split: Split
    horizon: int
    season: int
    report: LoadReport


def resolve_series(cfg: ForecastConfig, explicit_data_dir: str | None = None) -> list[SeriesSpec]:
    """The study's files from the data folder plus extra files; generated series only when there is no data folder."""
    specs = _study_series(cfg, find_data_dir(explicit_data_dir)) + [_extra_series(f) for f in cfg.series_files]
    if not specs:
        raise InputError("no series to run: forecast.datasets is empty and no series_files given")
    names = [f"{s.dataset}_{s.rate}" for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"series {', '.join(twice)} given more than once (forecast.datasets / series_files); "
                         f"give each series a unique <name>_<rate> file name")
    return specs


def _study_series(cfg: ForecastConfig, folder: Path | None) -> list[SeriesSpec]:
    if not cfg.datasets:
        return []
    if folder is None:
        paths = write_synthetic(seeds_dir() / "load", list(cfg.rates))
        return [SeriesSpec("synthetic", rate, path, generated=True) for rate, path in zip(cfg.rates, paths)]
    load_dir = folder / "load"
    found = {(d, r): _study_file(load_dir, d, r) for d in cfg.datasets for r in cfg.rates}
    missing = [f"{d}_{r}" for (d, r), path in found.items() if path is None]
    if missing:
        raise InputError(_missing_message(missing, load_dir))
    return [SeriesSpec(d, r, path) for (d, r), path in found.items()]


def _missing_message(missing: list[str], load_dir: Path) -> str:
    """Name the folder searched and what it holds, so a wrong --data-dir or a misspelt dataset is obvious."""
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    hint = "--data-dir / SEEDFLOW_DATA must be the folder that contains load/"
    if not load_dir.is_dir():
        return f"series {shown} not found: {load_dir} does not exist; {hint} (now {load_dir.parent})"
    held = sorted({stem.rpartition("_")[0] or stem for p in load_dir.iterdir() if (stem := series_stem(p))})
    return (f"series {shown} not found in {load_dir} (looked for <dataset>_<rate>.csv, .csv.gz or .parquet; "
            f"datasets there: {', '.join(held[:12]) or 'none'}{', ...' if len(held) > 12 else ''}); "
            f"check forecast.datasets and forecast.rates, or {hint}")


def _study_file(load_dir: Path, dataset: str, rate: str) -> Path | None:
    """`<dataset>_<rate>` with the first suffix that exists (.csv, .csv.gz, .parquet)."""
    for suffix in SUFFIXES:
        path = load_dir / f"{dataset}_{rate}{suffix}"
        if path.is_file():
            return path
    return None


def _extra_series(extra: str) -> SeriesSpec:
    path = Path(extra).expanduser().resolve()
    name, _, rate = (series_stem(path) or "").rpartition("_")
    if not name or rate not in HORIZONS:
        raise InputError(f"{path}: forecast.series_files entries must be named <name>_<rate>.csv, .csv.gz or "
                         f".parquet with rate in {list(HORIZONS)}; rename the file")
    return SeriesSpec(name, rate, path)


def prepare(spec: SeriesSpec, cfg: ForecastConfig) -> Prepared:
    """Load a series and check it fits the protocol; every refusal names the file."""
    series, report = read_series(spec.path, fill_gaps=cfg.fill_gaps, nan_policy=cfg.nan_policy, rate=spec.rate,
                                 resample=cfg.resample)
    horizon, season = HORIZONS[spec.rate], SEASONS[spec.rate]
    try:
        split = chronological_split(len(series), cfg.train_fraction, cfg.val_fraction)
        check_length(len(series), split, horizon, season, validates=any(m in DEEP_MODELS for m in cfg.models))
    except ValueError as exc:
        raise SeriesError(f"{spec.path}: {exc} (loaded: {report.summary()})") from exc
    train = series.to_numpy()[: split.n_train]
    if np.ptp(train) == 0:
        raise SeriesError(f"{spec.path}: the training part (first {split.n_train} steps) is constant at {train[0]:g}; "
                          f"there is nothing to forecast and MASE is undefined")
    return Prepared(series, split, horizon, season, report)


def check_inputs(cfg: ForecastConfig, data_dir: str | None = None) -> list[SeriesSpec]:
    """Everything that can be refused before training: every series exists, loads cleanly and fits the protocol."""
    return [replace(spec, report=prepare(spec, cfg).report) for spec in resolve_series(cfg, data_dir)]


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
    prep = prepare(spec, cfg)
    split, horizon = prep.split, prep.horizon
    y = prep.series.to_numpy(dtype=float)
    ctx = FitContext(split=split, season=prep.season, horizon=horizon, seed=cfg.seed)
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
        raise FloatingPointError(f"{model_name} on {spec.path} produced non-finite forecasts")
    y_test = y[split.n_train :]
    metrics = {**_scores(y_test, y_pred, y[: split.n_train], f"{model_name} on {spec.path}"),
               "fit_s": fit_s, "predict_s": predict_s}
    return ComboResult(
        dataset=spec.dataset,
        rate=spec.rate,
        model=model_name,
        walk_forward=model.walk_forward,
        metrics=metrics,
        params={"horizon": horizon, "season": prep.season, "n_train": split.n_train, "n_test": split.n_test,
                **prep.report.params(), **model.fitted_params},
        test_index=[str(t) for t in prep.series.index[split.n_train :]],
        y_test=y_test,
        y_pred=y_pred,
        loading=prep.report.counts(),
        model_bytes=pickle.dumps(model),
    )


def _scores(y_test: np.ndarray, y_pred: np.ndarray, train: np.ndarray, what: str) -> dict[str, float]:
    """The metrics, refused rather than reported when one is not finite (e.g. errors whose squares overflow)."""
    with np.errstate(over="ignore", invalid="ignore"):
        metrics = all_metrics(y_test, y_pred, train)
    bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
    if bad:
        raise FloatingPointError(f"{what}: non-finite metrics {bad}; the forecasts are far off the data's scale")
    return metrics
