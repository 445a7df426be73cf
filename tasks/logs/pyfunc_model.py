"""The MLflow pyfunc of a fitted log detector. MLflow runs this file to build the model ("models from
code"); the work is in tasks/logs/model_registry.py."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class SeedflowDetector(PythonModel):
    """Parsed lines (timestamp, node, template_id, tokens) in time order -> score and anomaly per line."""

    def load_context(self, context):
        from tasks.logs.model_registry import load_fitted

        self.detector = load_fitted(context.artifacts["detector"])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        from tasks.logs.model_registry import score_lines

        return score_lines(self.detector, model_input)


mlflow.models.set_model(SeedflowDetector())
