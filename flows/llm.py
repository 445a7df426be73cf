"""Prefect flows of the LLM pipeline. `llm_pretrain`: one Ray-distributed training stage.

Training itself (single process, DDP or DiLoCo on Ray actors) lives in `tasks/llm/train.py`;
the flow task holds no Ray CPU (num_cpus=0) because the workers it launches need the cores.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_ray.context import remote_options

from flows.retry import RETRY_TRANSIENT
from tasks.common.ray_runtime import task_runner


@task(name="llm-train-stage", retries=0, cache_policy=NO_CACHE)
def train_stage(cfg: Any, source: Any, init_checkpoint: str | None = None, stage: str = "pretrain",
                out_dir: str | None = None, tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one training stage (pretrain / midtrain / sft) with any BatchSource; returns its summary.

    Submit it under `remote_options(num_cpus=0)`: the Ray workers it starts need the cores.
    """
    from tasks.llm.train import run_training

    return run_training(cfg, source, init_checkpoint=init_checkpoint, out_dir=out_dir, stage=stage, tags=tags)


@flow(name="llm_pretrain", task_runner=task_runner(), log_prints=True)
def llm_pretrain(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pretrain the GPT on token shards; `overrides` are dotted keys of params.yaml `llm.pretrain`."""
    from tasks.common.paths import project_root
    from tasks.common.config import load_config
    from tasks.llm.config import PretrainConfig
    from tasks.llm.data import TokenStreamSource

    logger = get_run_logger()
    cfg = load_config(PretrainConfig, "llm.pretrain", overrides)
    source = TokenStreamSource(cfg.device_batch_size, cfg.sequence_len, tokens_dir=str(project_root() / cfg.tokens_dir))
    logger.info("llm_pretrain: mode=%s workers=%d depth=%d", cfg.mode, cfg.world_size, cfg.depth)
    with remote_options(num_cpus=0):
        summary = train_stage.submit(cfg, source, None, "pretrain").result()
    logger.info("llm_pretrain done: %s", {k: summary.get(k) for k in ("val_bpb", "tokens_per_s", "mlflow_run_id")})
    return summary


@task(name="llm-tokenize", **RETRY_TRANSIENT)
def tokenize_task(cfg_dict: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    """Train the tokenizer and write the token shards (pure code in tasks/llm/tokenize.py)."""
    from tasks.llm.config import TokenizerConfig
    from tasks.llm.tokenize import run_tokenize

    return run_tokenize(TokenizerConfig.model_validate(cfg_dict), data_dir)


@flow(name="llm_tokenize", task_runner=task_runner(), log_prints=True)
def llm_tokenize(overrides: dict[str, Any] | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """Tokenizer + token shards; `overrides` are dotted keys of params.yaml `llm.tokenizer`."""
    from tasks.common.config import load_config
    from tasks.llm.config import TokenizerConfig
    from tasks.llm.tokenize import log_to_mlflow

    logger = get_run_logger()
    cfg = load_config(TokenizerConfig, "llm.tokenizer", overrides)
    with remote_options(num_cpus=1):
        result = tokenize_task.submit(cfg.model_dump(mode="json"), data_dir).result()
    result["mlflow_run_id"] = log_to_mlflow(result, cfg)
    logger.info("llm_tokenize: %s", result["metrics"])
    return result
