"""The `llm_tokenize` flow: train the BPE tokenizer and write the token shards."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect_ray.context import remote_options

from flows.llm.checks import at_flow_start
from flows.options import default, flow_overrides
from flows.runtime import RETRY_TRANSIENT, task_runner
from tasks.common.config import load_config
from tasks.llm.config import TokenizerConfig


@task(name="llm-tokenize", **RETRY_TRANSIENT)
def tokenize_task(cfg: TokenizerConfig, data_dir: str | None) -> dict[str, Any]:
    """Train the tokenizer and write the token shards (pure code in tasks/llm/data/tokenize.py)."""
    from tasks.llm.data.tokenize import run_tokenize

    return run_tokenize(cfg, data_dir)


def tokenizer_config(overrides: dict[str, Any]) -> TokenizerConfig:
    return load_config(TokenizerConfig, "llm.tokenizer", overrides)


@flow(name="llm_tokenize", task_runner=task_runner(), log_prints=True)
def llm_tokenize(
    vocab_size: int = default("llm.tokenizer", "vocab_size"),
    corpus: list[str] = default("llm.tokenizer", "corpus"),
    overrides: dict[str, Any] | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Train the BPE tokenizer and encode the corpus into train/val token shards.

    Args:
        vocab_size: vocabulary size, including 256 bytes and 9 special tokens.
        corpus: files or folders (txt, jsonl, parquet), relative to the data folder; `generated` is built in.
        overrides: any other key of params.yaml `llm.tokenizer`, dotted; wins over the fields above.
        data_dir: public datasets folder (default: SEEDFLOW_DATA, else ../shared/datasets).
    """
    from tasks.llm.data.tokenize import log_to_mlflow
    from tasks.llm.preflight import check_tokenize

    cfg = tokenizer_config(flow_overrides(overrides, vocab_size=vocab_size, corpus=corpus))
    data_dir = at_flow_start(lambda folder: check_tokenize(cfg, folder), data_dir)
    with remote_options(num_cpus=1):
        result = tokenize_task.submit(cfg, data_dir).result()
    result["mlflow_run_id"] = log_to_mlflow(result, cfg)
    get_run_logger().info("llm_tokenize: %s -> %s", result["metrics"], result["out_dir"])
    return result
