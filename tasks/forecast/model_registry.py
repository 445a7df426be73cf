"""Fitted forecasters as MLflow models: one per (series, model) child run; the best of each series registered.

The pyfunc (tasks/forecast/pyfunc_model.py) reads a frame with a `y` column, the series from its first
point as the model was fit on it (state-update models filter from the start), and returns the next
`horizon` values after its last point. The registered name is `seedflow-forecast-<dataset>_<rate>`;
the best model is the one with the lowest sMAPE in this study.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from tasks.common.errors import InputError
from tasks.common.model_registry import log_pyfunc, pins, register

CODE = Path(__file__).with_name("pyfunc_model.py")
REQUIREMENTS = ("mlflow", "numpy", "pandas", "scikit-learn", "statsmodels", "torch")


def registered_name(dataset: str, rate: str) -> str:
    return f"seedflow-forecast-{dataset}_{rate}"


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("double", "y")]),
                          outputs=Schema([ColSpec("long", "step"), ColSpec("double", "forecast")]))


def log_forecaster(run_id: str, model_file: Path, horizon: int, season: int, tags: dict[str, str]):
    """Log a pickled fitted forecaster as run `run_id`'s MLflow model; its ModelInfo."""
    return log_pyfunc(run_id, CODE, {"model": str(model_file)}, signature(), pins(*REQUIREMENTS),
                      config={"horizon": horizon, "season": season}, tags=tags)


def load_forecaster(path: str):
    return pickle.loads(Path(path).read_bytes())


def forecast_next(model, history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The `horizon` values after `history`, forecast from its end as in the walk-forward."""
    history = np.asarray(history, dtype=float)
    if len(history) < 2 * season or not np.isfinite(history).all():
        raise InputError(f"forecast input: give at least {2 * season} finite values of y (two seasons), "
                         f"the series from its first point; got {len(history)}")
    padded = np.concatenate([history, np.full(horizon, history[-1])])  # never read: forecasts see y[:origin]
    return model.forecast(padded, np.array([len(history)]), horizon)[0]


def register_best(candidates: list[tuple[dict[str, str], float, object]]) -> dict[str, str]:
    """Register the lowest-sMAPE logged model of each series: {series: models:/NAME/VERSION}.

    `candidates` are (tags with dataset / rate / model, sMAPE, ModelInfo) per logged model."""
    best: dict[tuple[str, str], tuple[dict[str, str], float, object]] = {}
    for tags, smape, info in candidates:
        key = (tags["dataset"], tags["rate"])
        if key not in best or smape < best[key][1]:
            best[key] = (tags, smape, info)
    registered = {}
    for (dataset, rate), (tags, smape, info) in best.items():
        version = register(info, registered_name(dataset, rate), {**tags, "smape": f"{smape:.4f}"})
        registered[f"{dataset}_{rate}"] = f"models:/{version.name}/{version.version}"
    return registered
