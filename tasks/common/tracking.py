"""MLflow tracking that lands in one store wherever the code runs.

Ray workers, DVC stages and Prefect deployments run with other working directories; a
relative URI would scatter runs. `MLFLOW_TRACKING_URI` wins, else a SQLite store at the
project root with artifacts beside it.
"""

from __future__ import annotations

import os

from tasks.common.paths import project_root


def tracking_uri() -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def artifact_root() -> str:
    return (project_root() / "mlartifacts").as_uri()


def use_experiment(name: str, uri: str | None = None) -> str:
    """Point MLflow at the shared store and return the experiment id, creating it once."""
    import mlflow

    uri = uri or tracking_uri()
    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        location = None if uri.startswith(("http://", "https://")) else f"{artifact_root()}/{name}"
        try:
            return mlflow.create_experiment(name, artifact_location=location)
        except Exception:  # created concurrently by another process
            experiment = mlflow.get_experiment_by_name(name)
            if experiment is None:
                raise
    mlflow.set_experiment(experiment_id=experiment.experiment_id)
    return experiment.experiment_id
