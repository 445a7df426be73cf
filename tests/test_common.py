"""Spine helpers: tracking URI resolution, atomic writes, data folder resolution, Ray sizing."""

import json

import pytest

from tasks.common import atomic, paths, tracking
from tasks.common.ray_runtime import ray_init_kwargs


def test_tracking_uri_env_wins_else_absolute_project_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    uri = tracking.tracking_uri()
    assert uri == f"sqlite:///{paths.project_root() / 'mlflow.db'}" and uri.startswith("sqlite:////")


def test_experiment_is_created_once_and_runs_land_in_it(mlflow_store, tmp_path):
    import mlflow

    first = tracking.use_experiment("spine-test")
    assert tracking.use_experiment("spine-test") == first
    with mlflow.start_run() as run:
        mlflow.log_metric("x", 1.0)
    assert run.info.experiment_id == first
    assert mlflow.get_experiment(first).artifact_location.startswith((tmp_path / "mlartifacts").as_uri())


def test_processes_starting_together_on_a_new_store_all_get_it(tmp_path):
    """Served flows start at once on a fresh SQLite store; MLflow's migrations must not race."""
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = f"from tasks.common.tracking import use_experiment; use_experiment('race', {uri!r})"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=paths.project_root(), stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    failures = [err[-500:] for err in (p.communicate(timeout=300)[1] for p in procs) if err and "Error" in err]
    assert all(p.returncode == 0 for p in procs), failures


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.json"
    atomic.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_explicit_missing_data_dir_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        paths.data_dir(tmp_path / "missing")
    monkeypatch.setenv("SEEDFLOW_DATA", str(tmp_path))
    assert paths.data_dir() == tmp_path


def test_ray_is_local_and_bounded_unless_attaching(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    kwargs = ray_init_kwargs()
    assert kwargs["num_cpus"] >= 1 and 0 < kwargs["object_store_memory"] <= 2 * 1024**3
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert "num_cpus" not in ray_init_kwargs()  # passing num_cpus when attaching is an error


def test_local_ray_workers_inherit_the_environment_at_init(monkeypatch):
    """No environment is frozen into init kwargs (flows build them at import time)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/stale.db")
    assert "runtime_env" not in ray_init_kwargs()
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert ray_init_kwargs()["runtime_env"]["env_vars"]["MLFLOW_TRACKING_URI"] == "sqlite:////tmp/stale.db"


def test_only_transient_ray_failures_are_retried():
    from prefect.states import Failed

    from flows.runtime import transient_ray_failure
    from tasks.common.errors import InputError

    assert transient_ray_failure(None, None, Failed(data=SystemError("error return without exception set")))
    assert not transient_ray_failure(None, None, Failed(data=InputError("bad key")))
    assert not transient_ray_failure(None, None, Failed(data=ValueError("a bug")))


def test_errors_are_one_line_and_name_the_cause():
    from tasks.common.errors import InputError, exit_code, one_line

    assert one_line(InputError("params.yaml: bad key\nmore")) == "error: params.yaml: bad key"
    assert exit_code(InputError("x")) == 2 and exit_code(RuntimeError("x")) == 1
    assert one_line(RuntimeError("boom")).startswith("error: RuntimeError: boom (run with --debug")


def test_dvc_experiment_copies_track_into_the_home_checkout(monkeypatch, tmp_path):
    from tasks.common.tracking import tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SEEDFLOW_ROOT", str(tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "standalone" / "tmpab12"))
    assert tracking_uri() == f"sqlite:///{tmp_path / 'repo' / 'mlflow.db'}"
    monkeypatch.setenv("SEEDFLOW_ROOT", str(tmp_path / "repo"))
    assert tracking_uri() == f"sqlite:///{tmp_path / 'repo' / 'mlflow.db'}"
