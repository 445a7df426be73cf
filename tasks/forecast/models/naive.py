"""The two deterministic baselines of the study."""

from __future__ import annotations

import numpy as np

from tasks.forecast.models.base import FitContext, Forecaster, seasonal_context


class LastObserved(Forecaster):
    name = "last_observed"
    walk_forward = "deterministic"

    def fit(self, train: np.ndarray, ctx: FitContext) -> None:
        pass

    def forecast(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        return np.repeat(y[origins - 1][:, None], horizon, axis=1)


class LastDay(Forecaster):
    """Seasonal naive: the value one daily season earlier."""

    name = "last_day"
    walk_forward = "deterministic"

    def fit(self, train: np.ndarray, ctx: FitContext) -> None:
        self.season = ctx.season
        self.fitted_params = {"season": ctx.season}

    def forecast(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        if horizon > self.season:
            raise ValueError(f"last_day cannot forecast {horizon} steps with a season of {self.season}")
        return seasonal_context(y, origins, horizon, self.season)
