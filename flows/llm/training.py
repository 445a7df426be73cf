"""The training stages' Prefect task, shared by pretrain, midtrain, SFT and the study.

A stage runs as a task that holds no Ray CPU: the DDP / DiLoCo workers it starts are Ray actors that
need the cores. Its progress reaches the flow run's log one way only, relayed from
`<out_dir>/progress.log`, where rank 0 and the DiLoCo hub append every line: the task does not log
its prints, or the hub's lines (printed in the task's process) would show twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_ray.context import remote_options

from flows.runtime import relay_lines, worker_runs_end_with_flow
from tasks.llm.config import PretrainConfig

SLIM = ("history", "evals")  # per-step lists stay in the stage's own files, not in flow results


def slim(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in SLIM}


@contextmanager
def relayed_progress(out_dir: str) -> Iterator[None]:
    """The stage's progress lines into the run log while the block runs."""
    from tasks.llm.train.run_folder import progress_log

    with relay_lines(progress_log(out_dir), get_run_logger().info):
        yield


@task(name="llm-stage", retries=0, cache_policy=NO_CACHE, log_prints=False)
def stage_task(stage: str, cfg: PretrainConfig, init_checkpoint: str | None, out_dir: str | None,
               data_dir: str | None, tags: dict[str, str], tracking_uri: str) -> dict[str, Any]:
    """One training stage; submit it under `remote_options(num_cpus=0)`. Not retried: `resume` continues it."""
    import os

    from tasks.llm.train.stages import absolute, run_chat_stage, run_pretrain

    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri  # the driver's store, whatever this Ray worker inherited
    with relayed_progress(absolute(out_dir or cfg.out_dir)):
        if stage == "pretrain":
            summary = run_pretrain(cfg, out_dir, tags)
        else:
            summary = run_chat_stage(stage, cfg, init_checkpoint, out_dir, data_dir, tags)
    return slim(summary)


def train(stage: str, cfg: PretrainConfig, data_dir: str | None = None) -> dict[str, Any]:
    """A stage flow's body once its inputs are checked: the stage task, and a line before and after."""
    from tasks.common.tracking import tracking_uri

    logger = get_run_logger()
    logger.info("llm_%s: mode=%s workers=%d depth=%d steps=%d -> %s", stage, cfg.mode, cfg.world_size, cfg.depth,
                cfg.steps, cfg.out_dir)
    with worker_runs_end_with_flow() as tags, remote_options(num_cpus=0):
        summary = stage_task.submit(stage, cfg, None, None, data_dir, tags, tracking_uri()).result()
    logger.info("llm_%s done: %s", stage, {k: summary.get(k) for k in ("val_bpb", "final_train_loss", "tokens_per_s",
                                                                        "precision", "model_dir", "mlflow_run_id")})
    return summary
