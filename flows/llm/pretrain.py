"""The `llm_pretrain` flow: the GPT on the token shards, in one process or DDP / DiLoCo on Ray workers."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.llm.checks import at_flow_start
from flows.llm.training import train
from flows.options import default, flow_overrides
from flows.runtime import task_runner
from tasks.common.config import load_config
from tasks.llm.config import Mode, PretrainConfig


def pretrain_config(overrides: dict[str, Any]) -> PretrainConfig:
    return load_config(PretrainConfig, "llm.pretrain", overrides)


@flow(name="llm_pretrain", task_runner=task_runner(), log_prints=True)
def llm_pretrain(
    mode: Mode = default("llm.pretrain", "mode"),
    workers: int = default("llm.pretrain", "workers"),
    steps: int = default("llm.pretrain", "steps"),
    depth: int = default("llm.pretrain", "depth"),
    sequence_len: int = default("llm.pretrain", "sequence_len"),
    sites: list[dict[str, Any]] = default("llm.pretrain", "sites"),
    resume: bool = default("llm.pretrain", "resume"),
    overwrite: bool = default("llm.pretrain", "overwrite"),
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pretrain the GPT on the token shards: one process, or DDP / DiLoCo on Ray workers, on one or more sites.

    Args:
        mode: single, ddp or diloco.
        workers: Ray workers for ddp and diloco without sites.
        steps: optimizer steps.
        depth: transformer layers (width = 64 x depth).
        sequence_len: tokens per training sequence.
        sites: [{name, workers, link: {bandwidth_mbps, latency_ms}, resources, node_label, join_round, leave_round}];
            [] = the workers on this machine.
        resume: continue from the newest intact checkpoint in out_dir.
        overwrite: replace an earlier run in out_dir (without it, or resume, such a run is refused).
        overrides: any other key of params.yaml `llm.pretrain`, dotted (e.g. {"diloco.inner_steps": 20}); wins over the fields above.
    """
    from tasks.llm.preflight import check_pretrain

    cfg = pretrain_config(flow_overrides(overrides, mode=mode, workers=workers, steps=steps, depth=depth,
                                         sequence_len=sequence_len, sites=sites, resume=resume, overwrite=overwrite))
    at_flow_start(lambda _: check_pretrain(cfg, log=get_run_logger().info))
    return train("pretrain", cfg)
