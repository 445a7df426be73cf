"""Training stages as plain functions: pretrain on token shards, midtrain / SFT on task mixtures.

All three go through `run_training` (single / ddp / diloco), differing only in the batch source
and the checkpoint they start from, so DDP and DiLoCo can be swapped per stage (the study).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.common.paths import project_root
from tasks.common.model_registry import is_model_uri
from tasks.llm.train.checkpoint import read_meta
from tasks.llm.config import ChatStageConfig, PretrainConfig

CHAT_KINDS = {"midtrain": "packed_chat", "sft": "sft"}


def absolute(path: str | Path) -> str:
    """Relative to the project root; a registered model URI (`models:/...`) stays as it is."""
    return str(path if is_model_uri(path) or Path(path).is_absolute() else (project_root() / path).resolve())


def pretrain_source(cfg: PretrainConfig):
    from tasks.llm.data.batches import TokenStreamSource

    return TokenStreamSource(batch_size=cfg.device_batch_size, seq_len=cfg.sequence_len, tokens_dir=absolute(cfg.tokens_dir))


def chat_spec(stage: str, cfg: ChatStageConfig, tokenizer_path: str, data_dir: str | None = None) -> dict[str, Any]:
    """The JSON-able description of a midtrain / SFT source (see `source_from_chat_spec`)."""
    if stage not in CHAT_KINDS:
        raise ValueError(f"chat stages are {list(CHAT_KINDS)}, got {stage!r}")
    return {"kind": CHAT_KINDS[stage], "tokenizer": tokenizer_path, "batch_size": cfg.device_batch_size,
            "seq_len": cfg.sequence_len, "seed": cfg.seed, "train": cfg.train_tasks, "val": cfg.val_tasks,
            "options": cfg.task_options, "data_dir": data_dir, "use_mask": cfg.use_mask,
            "pad_to_seq_len": cfg.pad_to_seq_len}


def run_pretrain(cfg: PretrainConfig, out_dir: str | None = None, tags: dict[str, str] | None = None) -> dict:
    from tasks.llm.train.run import run_training

    return run_training(cfg, pretrain_source(cfg), None, out_dir=out_dir, stage="pretrain", tags=tags)


def run_chat_stage(stage: str, cfg: ChatStageConfig, init_checkpoint: str | None = None, out_dir: str | None = None,
                   data_dir: str | None = None, tags: dict[str, str] | None = None) -> dict:
    """Midtrain or SFT from `init_checkpoint` (default `cfg.init_from`) on the configured mixture."""
    from tasks.llm.data.chat_batches import source_from_chat_spec
    from tasks.llm.train.run import run_training

    init = absolute(init_checkpoint or cfg.init_from)
    meta = read_meta(init)
    tokenizer_path = meta.get("tokenizer", "")
    if "model_config" in meta:  # the model comes from the checkpoint: record its real depth
        cfg = cfg.model_copy(update={"depth": meta["model_config"]["n_layer"]})
    if not tokenizer_path:
        raise ValueError(f"checkpoint {init} records no tokenizer path; cannot render conversations")
    source = source_from_chat_spec(chat_spec(stage, cfg, tokenizer_path, data_dir))
    return run_training(cfg, source, init, out_dir=out_dir, stage=stage, tags=tags)


def run_curtail_stage(ccfg, pcfg: PretrainConfig, data_dir: str | None = None, tags: dict[str, str] | None = None) -> dict:
    """Curtailment-aware training on the pretraining token shards, traces from the data dir (generated without one)."""
    from tasks.common.paths import data_dir as resolve_data_dir
    from tasks.llm.curtail.run import run_curtail
    from tasks.llm.curtail.traces import site_traces

    traces = site_traces(ccfg, resolve_data_dir(data_dir))
    return run_curtail(ccfg, pcfg, pretrain_source(pcfg), traces, absolute(ccfg.out_dir), tags=tags)
