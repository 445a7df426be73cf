"""What every trainer settles before its first step: how many steps of how many micro-batches, and the model."""

from __future__ import annotations

import math
import os
import shutil

import torch

from tasks.common.errors import InputError
from tasks.llm.config import PretrainConfig
from tasks.llm.data.batches import BatchSource
from tasks.llm.model.gpt import GPT, GPTConfig
from tasks.llm.train.checkpoint import load_weights, read_meta


def plan_steps(cfg: PretrainConfig, source: BatchSource) -> tuple[int, int]:
    """(optimizer steps, micro-batches per step per worker) from the batch and budget settings."""
    per_forward = batch_tokens(source, cfg)
    world = cfg.world_size
    accum = 1
    if cfg.total_batch_tokens:
        if cfg.total_batch_tokens % (per_forward * world):
            raise InputError(f"total_batch_tokens={cfg.total_batch_tokens} is not a multiple of "
                             f"{world} worker(s) x {per_forward} tokens per forward")
        accum = cfg.total_batch_tokens // (per_forward * world)
    steps = math.ceil(cfg.token_budget / (per_forward * world * accum)) if cfg.token_budget else cfg.steps
    if steps < 1:
        raise InputError("nothing to train: steps and token_budget are both 0")
    return steps, accum


def batch_tokens(source: BatchSource, cfg: PretrainConfig) -> int:
    b = getattr(source, "batch_size", cfg.device_batch_size)
    t = getattr(source, "seq_len", cfg.sequence_len)
    return b * t


def build_model(cfg: PretrainConfig, vocab_size: int, init_checkpoint: str | None) -> tuple[GPT, dict]:
    """A fresh GPT from the config (seeded: identical on every rank), or the weights of a checkpoint."""
    torch.manual_seed(cfg.seed)
    if init_checkpoint:
        meta = read_meta(init_checkpoint)
        model = GPT(GPTConfig(**meta["model_config"]))
        if vocab_size is not None and vocab_size != model.config.vocab_size:
            raise ValueError(f"checkpoint {init_checkpoint} has vocabulary {model.config.vocab_size}, "
                             f"the data has {vocab_size}: they come from different tokenizers")
        load_weights(model, init_checkpoint)
        return model, meta
    return GPT(GPTConfig.from_depth(cfg.depth, vocab_size, cfg.sequence_len, cfg.n_kv_head)), {}


def prepare_model(cfg: PretrainConfig, source: BatchSource, init_checkpoint: str | None, device: str) -> tuple[GPT, dict]:
    """`build_model` on `device`, in training mode, compiled when the config says so."""
    model, meta = build_model(cfg, getattr(source, "vocab_size", None), init_checkpoint)
    model.to(device).train()
    if cfg.compile:
        if device == "cpu":
            require_cpp_compiler()
        model.compile_for_training()
    return model, meta


def require_cpp_compiler() -> None:
    """torch.compile on a CPU builds C++ kernels: without a compiler it fails deep inside the first step."""
    if not any(shutil.which(c) for c in (os.environ.get("CXX"), "g++", "clang++") if c):
        raise InputError("compile: true needs a C++ compiler (g++ or clang++, or $CXX) for torch.compile on CPU; "
                         "install one or set compile: false (--set compile=false)")
