"""The `llm_eval` flow: a checkpoint's val bits per byte and every configured task's score."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect_ray.context import remote_options

from flows.llm.checks import at_flow_start
from flows.options import default, flow_overrides
from flows.runtime import RETRY_TRANSIENT, task_runner
from tasks.common.config import load_config
from tasks.llm.config import EvalConfig


@task(name="llm-eval", **RETRY_TRANSIENT)
def eval_task(cfg: EvalConfig, checkpoint: str, data_dir: str | None, show: int = 0) -> dict[str, Any]:
    """One thread per evaluation: the study runs several side by side."""
    import torch

    from tasks.llm.eval.stage import evaluate_checkpoint

    torch.set_num_threads(1)
    return evaluate_checkpoint(cfg, checkpoint, data_dir, show=show)


def eval_config(overrides: dict[str, Any]) -> EvalConfig:
    return load_config(EvalConfig, "llm.eval", overrides)


@flow(name="llm_eval", task_runner=task_runner(), log_prints=True)
def llm_eval(
    checkpoint: str = default("llm.eval", "checkpoint"),
    max_examples: int = default("llm.eval", "max_examples"),
    overrides: dict[str, Any] | None = None,
    data_dir: str | None = None,
    show: int = 0,
) -> dict[str, Any]:
    """Evaluate a checkpoint: val bits per byte and every configured task's score.

    Args:
        checkpoint: checkpoint, run folder or models:/NAME/VERSION.
        max_examples: examples per task; 0 = all.
        overrides: any other key of params.yaml `llm.eval`, dotted; wins over the fields above.
        data_dir: public datasets folder (task files such as GSM8K and HumanEval).
        show: print this many generations per generative task.
    """
    from tasks.llm.eval.stage import record_eval
    from tasks.llm.preflight import check_eval

    cfg = eval_config(flow_overrides(overrides, checkpoint=checkpoint, max_examples=max_examples))
    data_dir = at_flow_start(lambda _: check_eval(cfg), data_dir)
    with remote_options(num_cpus=1):
        result = eval_task.submit(cfg, cfg.checkpoint, data_dir, show).result()
    recorded = record_eval(result, cfg)
    get_run_logger().info("llm_eval: bpb %s, %s; report %s", recorded["bpb"],
                          {k: v["accuracy"] for k, v in recorded["tasks"].items()}, recorded["report"])
    return recorded
