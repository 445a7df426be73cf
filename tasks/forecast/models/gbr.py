"""Gradient boosting on lag windows: one scikit-learn regressor per horizon step (direct strategy).

Features for origin o and step h: the last `lookback` scaled values and the three values around
one season before the target (y[o + h - season + j], j = -1, 0, 1), all strictly before o.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from tasks.forecast.models.base import FitContext, ScaledForecaster, lag_windows


class LagBoosting(ScaledForecaster):
    name = "gbr"

    def __init__(self, lookback: int = 24, max_iter: int = 200, learning_rate: float = 0.05) -> None:
        super().__init__()
        self.lookback, self.max_iter, self.learning_rate = lookback, max_iter, learning_rate

    def _features(self, y: np.ndarray, origins: np.ndarray, h: int) -> np.ndarray:
        seasonal = np.stack([y[origins + h - self.season + j] for j in (-1, 0, 1)], axis=1)
        return np.hstack([lag_windows(y, origins, self.lookback), seasonal])

    def fit_scaled(self, train: np.ndarray, ctx: FitContext) -> None:
        self.season, self.horizon = ctx.season, ctx.horizon
        if ctx.horizon + 1 >= ctx.season:
            raise ValueError(f"gbr needs horizon + 1 < season ({ctx.horizon} vs {ctx.season})")
        first = max(self.lookback, self.season + 1)
        self.regressors = []
        for h in range(ctx.horizon):
            origins = np.arange(first, len(train) - h)
            reg = HistGradientBoostingRegressor(
                max_iter=self.max_iter, learning_rate=self.learning_rate, random_state=ctx.seed
            )
            reg.fit(self._features(train, origins, h), train[origins + h])
            self.regressors.append(reg)
        self.fitted_params = {"lookback": self.lookback, "max_iter": self.max_iter}

    def forecast_scaled(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        return np.stack([self.regressors[h].predict(self._features(y, origins, h)) for h in range(horizon)], axis=1)
