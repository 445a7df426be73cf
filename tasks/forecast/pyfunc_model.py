"""The MLflow pyfunc of a fitted forecaster. MLflow runs this file to build the model ("models from
code"); the work is in tasks/forecast/model_registry.py."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class SeedflowForecaster(PythonModel):
    """A frame with column `y` (the series from its first point) -> the next `horizon` values."""

    def load_context(self, context):
        from tasks.forecast.model_registry import load_forecaster

        self.model = load_forecaster(context.artifacts["model"])
        self.horizon, self.season = int(context.model_config["horizon"]), int(context.model_config["season"])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        from tasks.forecast.model_registry import forecast_next

        values = forecast_next(self.model, model_input["y"].to_numpy(), self.horizon, self.season)
        return pd.DataFrame({"step": np.arange(1, self.horizon + 1), "forecast": values})


mlflow.models.set_model(SeedflowForecaster())
