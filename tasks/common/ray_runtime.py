"""Ray, sized for the machine: local by default, `RAY_ADDRESS` attaches to a cluster."""

from __future__ import annotations

import os

import psutil

OBJECT_STORE_FRACTION = 0.1
OBJECT_STORE_CAP = 2 * 1024**3
FORWARDED_ENV = (
    "MLFLOW_TRACKING_URI", "SEEDFLOW_DATA", "SEEDFLOW_ROOT", "PREFECT_API_URL", "PREFECT_HOME", "OMP_WAIT_POLICY",
)


def ray_init_kwargs() -> dict:
    """Arguments for `ray.init` (and prefect-ray's RayTaskRunner)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    kwargs: dict = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": True}
    if os.environ.get("RAY_ADDRESS"):
        # A cluster started elsewhere does not share our environment: forward the settings that
        # locate shared state. (A local cluster's workers inherit the driver's environment at
        # ray.init instead; a copy taken here, at import time, could be stale by then.)
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        if env:
            kwargs["runtime_env"] = {"env_vars": env}
        return kwargs  # resources belong to the cluster we attach to
    store = min(int(psutil.virtual_memory().total * OBJECT_STORE_FRACTION), OBJECT_STORE_CAP)
    kwargs.update(num_cpus=os.cpu_count() or 1, object_store_memory=store)
    return kwargs


def ensure_ray() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(**ray_init_kwargs())


def cluster_cpus() -> int:
    import ray

    ensure_ray()
    return int(ray.cluster_resources().get("CPU", 1))


def task_runner():
    """prefect-ray's RayTaskRunner on the same cluster settings."""
    from prefect_ray import RayTaskRunner

    kwargs = ray_init_kwargs()
    return RayTaskRunner(address=os.environ.get("RAY_ADDRESS"), init_kwargs=kwargs)
