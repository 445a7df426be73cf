"""Silent data corruption in the trainer: what `sdc.inject` and `sdc.guard` build for a rank.

Each rank gets an event log (tasks/llm/sdc/events.py), an injector on the faulty rank and a guard.
Rank 0's rows go to MLflow as per-step counts `sdc_<event>` (in DDP every rank acts together, so
they are all of them); after the run every rank's rows make `sdc_events.csv` in the run folder, an
MLflow artifact, and the summary counts the steps with each event on any worker
(`sdc_<event>_steps`) beside rank 0's `sdc_guard_seconds`, and a guard that only records
(`on_flag: record`) adds its per-step statistics as `sdc_trace`. With both parts off nothing is
built at all. `check_config` refuses, before anything starts, an injection that could not run as asked.
"""

from __future__ import annotations


import torch
from torch import nn

from tasks.common.config import ConfigError
from tasks.common.precision import resolve_precision, torch_dtype
from tasks.llm.config import PretrainConfig
from tasks.llm.train.device import resolve_device
from tasks.llm.model.gpt import GPT, GPTConfig
from tasks.llm.sdc.guard import StepGuard
from tasks.llm.sdc.events import EventLog
from tasks.llm.sdc.inject import Injector, fault_dtype, width

def attach(model: torch.nn.Module, optimizers: list, cfg: PretrainConfig, rank: int, dtype: torch.dtype,
           shared: bool) -> tuple[EventLog | None, Injector | None, StepGuard | None]:
    """This rank's event log, injector (on the faulty rank only) and guard; all None with both parts off.

    `shared`: the rank's process group steps together (DDP), so one rank's flag is everyone's."""
    inject, guard = cfg.sdc.inject, cfg.sdc.guard
    if not (inject.enabled or guard.enabled):
        return None, None, None
    log = EventLog(rank)
    injector = Injector(model, optimizers, inject, dtype, log.add) if inject.enabled and rank == inject.rank else None
    step_guard = StepGuard(guard, optimizers, model, cfg.optim.grad_clip, shared, log) if guard.enabled else None
    return log, injector, step_guard


def linear_names(cfg: PretrainConfig) -> list[str]:
    """The Linear layers of the GPT the config trains. Its module names depend on the depth alone, so a 2-wide GPT
    of that depth has them all (built in milliseconds; on the meta device the first build imports torch's meta
    kernels, seconds before a one-line error)."""
    model = GPT(GPTConfig(sequence_len=1, vocab_size=1, n_layer=cfg.depth, n_head=1, n_kv_head=1, n_embd=2))
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _layer_patterns(names: list[str]) -> str:
    """`transformer.h.<i>.attn.c_q, ... (i = 0..3)` rather than every block's names."""
    blocks = sorted({int(n.split(".")[2]) for n in names if n.startswith("transformer.h.")})
    patterns = dict.fromkeys(".".join("<i>" if k == 2 and n.startswith("transformer.h.") else part
                                      for k, part in enumerate(n.split("."))) for n in names)
    return f"{', '.join(patterns)} (i = 0..{blocks[-1]})" if blocks else ", ".join(patterns)


def check_config(cfg: PretrainConfig) -> None:
    """An injection that could not run as asked, refused in one line before anything starts: a layer the model
    does not have, bits outside the width of the element's dtype, optimizer-state faults without any state."""
    inject = cfg.sdc.inject
    if inject.bits:
        dtype = fault_dtype(inject.stage, torch_dtype(resolve_precision(cfg.precision, resolve_device(cfg.device))))
        n = width(dtype)
        if any(not 0 <= b < n for b in inject.bits):
            raise ConfigError(f"sdc.inject.bits {inject.bits} are not bit positions of "
                              f"{str(dtype).removeprefix('torch.')} (stage {inject.stage}, precision {cfg.precision}): "
                              f"use bits in 0..{n - 1}, or [] for one drawn from bit_class")
    if not inject.enabled:
        return
    names = linear_names(cfg)
    if inject.layer and inject.layer not in names:
        raise ConfigError(f"sdc.inject.layer {inject.layer!r} is not a Linear of the depth-{cfg.depth} GPT; use one of "
                          f"{_layer_patterns(names)}, or '' for a random one per event")
    if inject.stage == "optimizer" and cfg.optim.kind == "sgd":
        raise ConfigError("sdc.inject.stage=optimizer corrupts optimizer state, and optim.kind=sgd keeps none; "
                          "use optim.kind muon or adamw, or another stage")
