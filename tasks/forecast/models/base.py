"""The interface every forecaster implements.

`fit` sees only the training part. `forecast` gets the whole series and a list of origins and
must forecast positions o..o+fh-1 from y[:o] alone; it may update state with observations
before each origin (cheaper than refitting, and equivalent with fixed parameters). The test
suite perturbs values after an origin and fails any model whose forecast moves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tasks.forecast.protocol import MinMaxScaler, Split


@dataclass
class FitContext:
    split: Split
    season: int
    horizon: int
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


class Forecaster(ABC):
    name: str = "forecaster"
    # How the model moves through the test part; reported in the leaderboard. The study refit
    # classical models at every origin; "state-update" keeps fitted parameters and filters.
    walk_forward: str = "inputs"  # fit once; forecasts read the latest observations

    def __init__(self) -> None:
        self.fitted_params: dict[str, Any] = {}

    @abstractmethod
    def fit(self, train: np.ndarray, ctx: FitContext) -> None: ...

    @abstractmethod
    def forecast(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        """Array (len(origins), horizon): row k forecasts y[o_k : o_k + horizon] from y[:o_k]."""


class ScaledForecaster(Forecaster):
    """Works on min-max scaled values, the scaler fit on the training part only."""

    scaler: MinMaxScaler

    def fit(self, train: np.ndarray, ctx: FitContext) -> None:
        self.scaler = MinMaxScaler.fit(train)
        self.fit_scaled(self.scaler.transform(train), ctx)

    def forecast(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        return self.scaler.inverse(self.forecast_scaled(self.scaler.transform(y), origins, horizon))

    @abstractmethod
    def fit_scaled(self, train: np.ndarray, ctx: FitContext) -> None: ...

    @abstractmethod
    def forecast_scaled(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray: ...


def lag_windows(y: np.ndarray, origins: np.ndarray, lookback: int) -> np.ndarray:
    """Rows y[o - lookback : o] for each origin (all origins must be >= lookback)."""
    idx = origins[:, None] - lookback + np.arange(lookback)[None, :]
    return y[idx]


def seasonal_context(y: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Values one season before each target step: y[o + h - season] for h < horizon (all before o)."""
    idx = origins[:, None] + np.arange(horizon)[None, :] - season
    return y[idx]
