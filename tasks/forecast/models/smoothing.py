"""Exponential smoothing: SES and Holt-Winters with the daily season.

statsmodels estimates the parameters on the training part; forecasting then runs the same
recursions over the whole series with those parameters fixed, which updates the state with each
observation instead of refitting at every origin (the study refit; with fixed parameters the
two are identical, and `test_forecast_models` checks the recursion against statsmodels).
"""

from __future__ import annotations

import warnings

import numpy as np
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from tasks.forecast.models.base import FitContext, Forecaster


def smoothing_states(y: np.ndarray, p: dict, trend: str | None, seasonal: str | None, m: int):
    """Level L[t], trend B[t] after y[t], and season S[t + m] = s_t (S[:m] are the initial seasons)."""
    n = len(y)
    a = p["smoothing_level"]
    b = p["smoothing_trend"] if trend else 0.0
    g = p["smoothing_seasonal"] if seasonal else 0.0
    level, slope = p["initial_level"], (p["initial_trend"] if trend else 0.0)
    L, B = np.empty(n), np.empty(n)
    S = np.empty(n + m) if seasonal else np.zeros(n + 1)
    if seasonal:
        S[:m] = p["initial_seasons"]
    for t in range(n):
        base = level + slope
        if seasonal == "mul":
            st = S[t]
            new_level = a * (y[t] / st) + (1 - a) * base
            S[t + m] = g * (y[t] / base) + (1 - g) * st
        elif seasonal == "add":
            st = S[t]
            new_level = a * (y[t] - st) + (1 - a) * base
            S[t + m] = g * (y[t] - base) + (1 - g) * st
        else:
            new_level = a * y[t] + (1 - a) * base
        slope = b * (new_level - level) + (1 - b) * slope if trend else 0.0
        level = new_level
        L[t], B[t] = level, slope
    return L, B, S


class ExponentialSmoothingForecaster(Forecaster):
    """Fits each (trend, seasonal) candidate and keeps the one with the lowest AIC."""

    candidates: tuple[tuple[str | None, str | None], ...] = ((None, None),)
    walk_forward = "state-update"

    def fit(self, train: np.ndarray, ctx: FitContext) -> None:
        self.m = ctx.season
        best = None
        for trend, seasonal in self.candidates:
            if seasonal == "mul" and np.min(train) <= 0:
                continue  # multiplicative seasonality needs strictly positive data
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = ExponentialSmoothing(
                    train,
                    trend=trend,
                    seasonal=seasonal,
                    seasonal_periods=ctx.season if seasonal else None,
                    initialization_method="estimated",
                ).fit()
            if np.isfinite(res.aic) and (best is None or res.aic < best[0]):
                best = (res.aic, trend, seasonal, dict(res.params))
        if best is None:
            raise ValueError(f"{self.name}: no candidate model could be fit")
        aic, self.trend, self.seasonal, self.params = best
        self.fitted_params = {
            "trend": str(self.trend),
            "seasonal": str(self.seasonal),
            "aic": float(aic),
            "alpha": float(self.params["smoothing_level"]),
        }

    def forecast(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        L, B, S = smoothing_states(y, self.params, self.trend, self.seasonal, self.m)
        steps = np.arange(1, horizon + 1)
        base = L[origins - 1][:, None] + steps[None, :] * B[origins - 1][:, None]
        if not self.seasonal:
            return base
        season = S[origins[:, None] + steps[None, :] - 1]  # s_{o+h-m}, the latest estimate for that phase
        return base * season if self.seasonal == "mul" else base + season


class SimpleExponentialSmoothing(ExponentialSmoothingForecaster):
    name = "ses"
    candidates = ((None, None),)


class HoltWinters(ExponentialSmoothingForecaster):
    """Additive vs multiplicative daily season (with or without trend), chosen by AIC."""

    name = "holt_winters"
    candidates = ((None, "add"), ("add", "add"), (None, "mul"), ("add", "mul"))
