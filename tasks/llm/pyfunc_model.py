"""The MLflow pyfunc of a seedflow checkpoint. MLflow runs this file to build the model ("models from
code"); the work is in tasks/llm/registry.py."""

from __future__ import annotations

import mlflow
from mlflow.pyfunc import PythonModel


class SeedflowChat(PythonModel):
    """Prompts (a DataFrame column `prompt` or a list of strings) -> one chat reply each."""

    def load_context(self, context):
        from tasks.llm.registry import load_bundled

        self.model, self.tokenizer = load_bundled(context.artifacts)

    def predict(self, context, model_input, params=None):
        from tasks.llm.registry import complete

        prompts = model_input["prompt"].tolist() if hasattr(model_input, "columns") else list(model_input)
        return complete(self.model, self.tokenizer, prompts, params)


mlflow.models.set_model(SeedflowChat())
