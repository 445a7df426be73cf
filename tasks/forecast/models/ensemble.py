"""Forecast combination: the mean of a fixed set of member models.

Members are fixed in params.yaml before any test data is seen (no selection on the test part);
averaging models with different errors is one of the most reliable gains in forecasting.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.forecast.models.base import FitContext, Forecaster


class MeanEnsemble(Forecaster):
    name = "ensemble"
    walk_forward = "combination"

    def __init__(self, members: list[str], member_options: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        if not members:
            raise ValueError("ensemble needs at least one member model")
        self.members, self.member_options = list(members), member_options or {}

    def fit(self, train: np.ndarray, ctx: FitContext) -> None:
        from tasks.forecast.models.catalog import make_model

        self.models = [make_model(name, **self.member_options.get(name, {})) for name in self.members]
        for model in self.models:
            model.fit(train, ctx)
        self.fitted_params = {"members": ",".join(self.members)}

    def forecast(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        return np.mean([model.forecast(y, origins, horizon) for model in self.models], axis=0)
