"""Checks each LLM stage runs before any server, Ray worker or training starts.

Everything that can be known from the config and the files on disk is checked here, so a bad
input costs a second and one line, not a Ray start-up and a traceback. A command runs them once;
a flow started from the Prefect UI runs them itself (flows/llm/checks.py).
"""

from __future__ import annotations

import math
from pathlib import Path

from tasks.common.errors import InputError
from tasks.common.paths import project_root
from tasks.common.model_registry import is_model_uri
from tasks.llm.train.checkpoint import read_meta, resolve_checkpoint
from tasks.llm.config import ChatStageConfig, EvalConfig, PretrainConfig, StudyConfig, TokenizerConfig
from tasks.llm.data.shards import TokenShards


def _absolute(path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else project_root() / path


def check_tokens(tokens_dir: str) -> None:
    for split in ("train", "val"):
        TokenShards(_absolute(tokens_dir), split)


def check_training(cfg: PretrainConfig, out_dir: Path, log=print) -> None:
    """Batch plan, device, compiler, and the out-dir rule (no run over an earlier one; resume point)."""
    from tasks.llm.train.device import resolve_device
    from tasks.llm.train.build import plan_steps, require_cpp_compiler
    from tasks.llm.train.run_folder import check_out_dir, choose_resume

    steps, _ = plan_steps(cfg, None)
    check_site_rounds(cfg, steps)
    if cfg.compile and resolve_device(cfg.device) == "cpu":
        require_cpp_compiler()
    check_out_dir(cfg, out_dir)
    if cfg.resume:
        choose_resume(cfg, out_dir, steps, log=log)


def check_site_rounds(cfg: PretrainConfig, steps: int) -> None:
    """Every site joins in a round that exists: DiLoCo has ceil(steps / H) rounds."""
    rounds = math.ceil(steps / cfg.diloco.inner_steps) if cfg.mode == "diloco" else steps
    late = [f"{s.name} (join_round {s.join_round})" for s in cfg.sites if s.join_round >= rounds]
    if late:
        raise InputError(f"sites {', '.join(late)} join after the last of the run's {rounds} rounds, so they never "
                         f"train; lower join_round below {rounds} or train longer")


def check_pretrain(cfg: PretrainConfig, log=print) -> None:
    from tasks.llm.train.device import resolve_device
    from tasks.llm.sdc.attach import check_config as check_sdc

    resolve_device(cfg.device)
    check_sdc(cfg)
    check_training(cfg, _absolute(cfg.out_dir).resolve(), log)
    check_tokens(cfg.tokens_dir)


def check_checkpoint(path: str, what: str) -> dict:
    """The meta of a checkpoint that exists, parses and names a tokenizer file that exists."""
    meta = read_meta(path if is_model_uri(path) else resolve_checkpoint(_absolute(path)))
    tokenizer = meta.get("tokenizer") or ""
    if not tokenizer or not Path(tokenizer).is_file():
        raise InputError(f"{what} {path} names tokenizer {tokenizer!r}, which does not exist; "
                         "re-run the stage that wrote it")
    return meta


def check_chat_stage(stage: str, cfg: ChatStageConfig, log=print) -> None:
    check_checkpoint(cfg.init_from, f"llm.{stage}.init_from")
    check_training(cfg, _absolute(cfg.out_dir).resolve(), log)


def check_eval(cfg: EvalConfig) -> None:
    check_checkpoint(cfg.checkpoint, "llm.eval.checkpoint")
    if cfg.bpb_tokens:
        TokenShards(_absolute(cfg.tokens_dir), "val")


def check_study(study: StudyConfig) -> None:
    """No study over an earlier one unless asked: every stage folder of every arm is checked."""
    from tasks.llm.eval.study_report import STAGES, arm_name
    from tasks.llm.train.run_folder import RunFolderTaken, previous_run

    root = _absolute(study.out_dir).resolve()
    for modes in study.arms:
        for i, stage in enumerate(STAGES):
            earlier = previous_run(root / arm_name(list(modes[: i + 1])) / stage)
            if earlier and not study.overwrite:
                raise RunFolderTaken(root, f"{arm_name(list(modes[: i + 1]))}/{stage}: {earlier}", what="study",
                                     resumable=False)


def check_tokenize(cfg: TokenizerConfig, data_dir: str | None) -> None:
    from tasks.llm.data.corpus import check_corpus
    from tasks.llm.data.tokenize import GENERATED, resolve_corpus

    entries = resolve_corpus(cfg.model_copy(update={"download_shards": 0}), data_dir)
    files = [e for e in entries if e != GENERATED]
    if files:
        check_corpus(files, cfg.text_field)


def check_curtail(ccfg, pcfg: PretrainConfig, data_dir: str | None) -> None:
    """Token shards, traces (loaded and planned: a bad or short trace is one line) and the training rules.

    The check plans with the reactive policy: the forecast policy's model fits take a minute, and a
    trace too short for one is too short for the other."""
    from tasks.common.paths import data_dir as resolve_data_dir
    from tasks.llm.curtail.run import prepare, training_config
    from tasks.llm.curtail.traces import site_traces

    prepared = prepare(ccfg, site_traces(ccfg, resolve_data_dir(data_dir)), policy="reactive")
    check_tokens(pcfg.tokens_dir)
    check_training(training_config(pcfg, prepared), _absolute(ccfg.out_dir).resolve())
