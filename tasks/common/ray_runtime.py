"""Ray, sized for the machine: a private local runtime by default, `RAY_ADDRESS` attaches to a cluster.

Without `RAY_ADDRESS` every command starts its own runtime (address "local"), even when a
`ray start` cluster runs on the machine: auto-attaching to it by chance made every command fail
(resources cannot be set when attaching). To use that cluster, say so: `RAY_ADDRESS=auto` (the
local one) or `RAY_ADDRESS=<host>:6379`. Ray's token authentication stays on in both cases: Ray
2.60 binds its gRPC servers to the node's network address and cannot be held to 127.0.0.1.

Ray's C++ failure signal handler is off (set here, before anything imports Ray): on SIGTERM it
arms a 3 s alarm that aborts the process, so a driver was killed in the middle of ending its
MLflow runs and stopping its Prefect server whenever that took longer (a loaded machine).
"""

from __future__ import annotations

import os

import psutil

OBJECT_STORE_FRACTION = 0.1
OBJECT_STORE_CAP = 2 * 1024**3
FORWARDED_ENV = (
    "MLFLOW_TRACKING_URI", "SEEDFLOW_DATA", "SEEDFLOW_ROOT", "PREFECT_API_URL", "PREFECT_HOME", "OMP_WAIT_POLICY",
    "RAY_DISABLE_FAILURE_SIGNAL_HANDLER",
)
os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")


def ray_address() -> str:
    """`RAY_ADDRESS` when set (a cluster to attach to), else "local" (a private runtime)."""
    return os.environ.get("RAY_ADDRESS") or "local"


def ray_init_kwargs() -> dict:
    """Keyword arguments for `ray.init(ray_address(), ...)` (and prefect-ray's RayTaskRunner, flows/runtime.py)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    kwargs: dict = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": True}
    if ray_address() != "local":
        # A cluster started elsewhere does not share our environment: forward the settings that
        # locate shared state. (A private runtime's workers inherit the driver's environment at
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
        ray.init(ray_address(), **ray_init_kwargs())


def cluster_cpus() -> int:
    import ray

    ensure_ray()
    return int(ray.cluster_resources().get("CPU", 1))

