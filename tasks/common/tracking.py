"""MLflow tracking that lands in one store wherever the code runs.

Ray workers, DVC stages and Prefect deployments run with other working directories; a
relative URI would scatter runs. `MLFLOW_TRACKING_URI` wins, else a SQLite store at the
project root with artifacts beside it; for a `dvc exp run --temp` / `--queue` copy (under
`<repo>/.dvc/tmp/exps/`), the root of the checkout it was copied from, so runs outlive the copy.
"""

from __future__ import annotations

import fcntl
import os
from functools import cache
from pathlib import Path

from tasks.common.paths import project_root


def home_checkout(root: Path) -> Path:
    """`root`, or the checkout a DVC experiment copy at `root` was made from."""
    parts = root.parts
    for i in range(len(parts) - 2):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return root


def tracking_uri() -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{home_checkout(project_root()) / 'mlflow.db'}"


def artifact_root(uri: str) -> str:
    """Artifacts sit beside a SQLite store (`mlartifacts/`), else at the project root."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return (project_root() / "mlartifacts").as_uri()


@cache
def ready_store(uri: str) -> str:
    """Create a new SQLite store's tables under a file lock, once per process: flows started
    together (a served forecast, logs and tokenize run) would otherwise race through MLflow's
    schema migrations on the same fresh file and one of them fails."""
    if uri.startswith("sqlite:///"):
        from mlflow.tracking import MlflowClient

        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        with open(db.with_name(db.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            MlflowClient(uri).search_experiments(max_results=1)
    return uri


def client(uri: str | None = None):
    """An MlflowClient on a store that is ready for use."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(ready_store(uri or tracking_uri()))


def use_experiment(name: str, uri: str | None = None) -> str:
    """Point MLflow at the shared store and return the experiment id, creating it once."""
    import mlflow

    uri = ready_store(uri or tracking_uri())
    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        location = None if uri.startswith(("http://", "https://")) else f"{artifact_root(uri)}/{name}"
        try:
            experiment_id = mlflow.create_experiment(name, artifact_location=location)
        except Exception:  # created concurrently by another process
            experiment = mlflow.get_experiment_by_name(name)
            if experiment is None:
                raise
            experiment_id = experiment.experiment_id
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def fail_open_runs(tag: str, value: str, uri: str | None = None, patience_s: float = 60.0) -> int:
    """End as FAILED every RUNNING run tagged `tag=value`: runs whose Ray worker was killed with its
    driver cannot end themselves. Returns how many were ended.

    A SQLite store stays locked while a worker that is still training writes to it, and a loaded
    machine may not schedule that worker for a while: wait up to `patience_s` for the lock."""
    import time

    deadline = time.monotonic() + patience_s
    while True:
        try:
            return _fail_runs(client(uri), f"tags.`{tag}` = '{value}' and attributes.status = 'RUNNING'")
        except Exception as exc:
            if "database is locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _fail_runs(client, query: str) -> int:
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, query) if experiments else []
    for run in runs:
        client.set_terminated(run.info.run_id, status="FAILED")
    return len(runs)
