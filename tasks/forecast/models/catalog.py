"""Model names as they appear in params.yaml, the CLI and the leaderboard."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from tasks.forecast.models.base import Forecaster

MODELS: dict[str, str] = {
    "last_observed": "tasks.forecast.models.naive:LastObserved",
    "last_day": "tasks.forecast.models.naive:LastDay",
    "ses": "tasks.forecast.models.smoothing:SimpleExponentialSmoothing",
    "holt_winters": "tasks.forecast.models.smoothing:HoltWinters",
    "arima": "tasks.forecast.models.arima:AutoArima",
    "gbr": "tasks.forecast.models.gbr:LagBoosting",
    "gru": "tasks.forecast.models.deep:GRUForecaster",
    "cnn": "tasks.forecast.models.deep:CNNForecaster",
    "ensemble": "tasks.forecast.models.ensemble:MeanEnsemble",
}
DEEP_MODELS = ("gru", "cnn")


def make_model(name: str, **options: Any) -> Forecaster:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(import_module(module), cls)(**options)
