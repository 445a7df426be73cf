"""Shared fixtures: real services at small size, never fakes.

- `shared_data`: ../shared/datasets (the real public files); tests that need it skip clearly when absent.
- `mlflow_store`: a real SQLite MLflow store in a temporary folder (MLFLOW_TRACKING_URI), copied from one
  whose schema was made once per session (MLflow's migrations take ~2 s; ~40 tests need a store).
- `prefect_server`: a real `prefect server` on 127.0.0.1 for the whole session.
- `ray_local`: a real local Ray runtime sized to the machine.
- `one_torch_thread`: tiny models run one intra-op thread, as the flows' Ray tasks do (and faster).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from flows.runtime import apply_prefect_env
from tasks.common.paths import data_dir

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
apply_prefect_env()  # project-local Prefect state and INFO run logs, as the CLI sets them


@pytest.fixture(scope="session")
def shared_data() -> Path:
    folder = data_dir()
    if folder is None:
        pytest.skip("../shared/datasets not present (set SEEDFLOW_DATA)")
    return folder


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments(max_results=1)
    return db


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch, migrated_store) -> str:
    import mlflow

    shutil.copyfile(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # an earlier test's set_tracking_uri would otherwise win over the env
    return uri


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real Prefect API for the session, with its own PREFECT_HOME."""
    from flows.runtime import prefect_api

    home = tmp_path_factory.mktemp("prefect_home")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.pop("PREFECT_API_URL", None)
    with prefect_api() as url:
        yield url


@pytest.fixture(scope="session")
def ray_local():
    import ray

    from tasks.common.ray_runtime import ensure_ray

    ensure_ray()
    yield ray
    ray.shutdown()


@pytest.fixture()
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
