"""The MLflow pyfunc of a seedflow checkpoint. MLflow runs this file to build the model ("models from
code"); the work is in tasks/llm/model_registry.py."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class SeedflowChat(PythonModel):
    """Prompts (a list of strings, or a DataFrame whose first column holds them) -> one chat reply each."""

    def load_context(self, context):
        from tasks.llm.model_registry import load_bundled

        self.model, self.tokenizer = load_bundled(context.artifacts)

    def predict(self, context, model_input: pd.DataFrame, params=None):
        from tasks.llm.model_registry import complete

        return complete(self.model, self.tokenizer, model_input.iloc[:, 0].tolist(), params)


mlflow.models.set_model(SeedflowChat())
