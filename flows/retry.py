"""Prefect task retries for transient Ray failures only.

Under heavy load Ray can lose a worker or fail to deserialise a result (seen: SystemError in a
study run at load average 20). Such a task is worth one more try; a bad input or a bug is not,
so every other error fails the task at once. Training stages are not retried: their
checkpoints make `--resume` the way to continue.
"""

from __future__ import annotations

from typing import Any

from tasks.common.errors import root_cause

TRANSIENT = ("RaySystemError", "WorkerCrashedError", "ActorDiedError", "NodeDiedError", "ObjectLostError",
             "OwnerDiedError", "ObjectFetchTimedOutError", "LocalRayletDiedError", "SystemError")


def transient_ray_failure(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except Exception as exc:  # the failure the state holds
        return any(type(e).__name__ in TRANSIENT for e in (exc, root_cause(exc)))
    return False


RETRY_TRANSIENT = {"retries": 1, "retry_delay_seconds": 2, "retry_condition_fn": transient_ray_failure}
