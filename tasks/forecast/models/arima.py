"""Auto-ARIMA: differencing order by the ADF test, (p, q) by AIC over a small grid.

The fitted state-space model is re-run over the whole series with its parameters fixed; the
h-step forecast from every origin is Z T^h a_o + d, computed for all origins at once from the
one-step predicted states. This equals statsmodels' own forecast from that origin.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
from statsmodels.tsa.statespace.sarimax import SARIMAX
from statsmodels.tsa.stattools import adfuller

from tasks.forecast.models.base import FitContext, ScaledForecaster


def differencing_order(train: np.ndarray, max_d: int, alpha: float = 0.05) -> int:
    x = train
    for d in range(max_d + 1):
        if d == max_d or adfuller(x, autolag="AIC", result_object=False)[1] < alpha:
            return d
        x = np.diff(x)
    return max_d


class AutoArima(ScaledForecaster):
    name = "arima"
    walk_forward = "state-update"

    def __init__(self, max_p: int = 2, max_q: int = 2, max_d: int = 1, fit_window: int = 2000) -> None:
        super().__init__()
        self.max_p, self.max_q, self.max_d, self.fit_window = max_p, max_q, max_d, fit_window

    def _model(self, y: np.ndarray, order: tuple[int, int, int]) -> SARIMAX:
        trend = "c" if order[1] == 0 else "n"
        return SARIMAX(y, order=order, trend=trend, enforce_stationarity=False, enforce_invertibility=False)

    def fit_scaled(self, train: np.ndarray, ctx: FitContext) -> None:
        train = train[-self.fit_window :]  # AIC search on the most recent part keeps 5-min series fast
        d = differencing_order(train, self.max_d)
        best = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for p, q in itertools.product(range(self.max_p + 1), range(self.max_q + 1)):
                try:
                    res = self._model(train, (p, d, q)).fit(disp=False, maxiter=200)
                except (np.linalg.LinAlgError, ValueError):
                    continue
                if np.isfinite(res.aic) and (best is None or res.aic < best[0]):
                    best = (res.aic, (p, d, q), res.params)
        if best is None:
            raise ValueError("arima: no order could be fit")
        aic, self.order, self.params = best
        self.fitted_params = {"order": str(self.order), "aic": float(aic)}

    def forecast_scaled(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = self._model(y, self.order).filter(self.params)
        ssm = res.model.ssm
        Z, T = np.asarray(ssm["design"]), np.asarray(ssm["transition"])  # time-invariant
        # intercepts are stored per time step; with a constant trend every column is the same
        c = np.asarray(ssm["state_intercept"]).reshape(T.shape[0], -1)[:, 0]
        d = np.asarray(ssm["obs_intercept"]).reshape(1, -1)[:, 0]
        state = res.predicted_state[:, origins]  # a_{o | o-1}: predicted state for position o given y[:o]
        out = np.empty((len(origins), horizon))
        for h in range(horizon):
            out[:, h] = (Z @ state)[0] + d[0]
            state = T @ state + c[:, None]
        return out
