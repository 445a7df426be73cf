"""The LLM pipeline: tokenize -> pretrain (DDP or DiLoCo) -> midtrain -> SFT -> eval, and the study.

Every stage is a Prefect flow (and so a deployment) and a `seedflow llm` command. Training stages
run as a Prefect task that holds no Ray CPU: the DDP / DiLoCo workers it starts are Ray actors
that need the cores. Their rank 0 writes progress to `<out_dir>/progress.log`, relayed into the
flow run's log. The study runs the arms DDP->DDP->DDP, DiLoCo x3 and DiLoCo->DDP->DDP with one seed
and budget; arms that begin with the same modes share those stages. Torch-heavy modules load
inside the functions, so `seedflow --help` stays quick.
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_ray.context import remote_options

from flows.options import (DATA_DIR_OPTION, OVERWRITE_OPTION, cli_overrides, comma_list, default, flow_overrides,
                           int_list, set_option)
from flows.runtime import RETRY_TRANSIENT, relay_lines, run_flow, task_runner, worker_runs_end_with_flow
from tasks.common.config import load_config
from tasks.common.errors import InputError
from tasks.llm.config import CHAT_STAGES, EvalConfig, Mode, PretrainConfig, StudyConfig, TokenizerConfig
from tasks.llm.curtail.config import CurtailConfig, PolicyName

SLIM = ("history", "evals")  # per-step lists stay in the stage's own files, not in flow results


# ---------------------------------------------------------------- tasks

@task(name="llm-tokenize", **RETRY_TRANSIENT)
def tokenize_task(cfg: TokenizerConfig, data_dir: str | None) -> dict[str, Any]:
    """Train the tokenizer and write the token shards (pure code in tasks/llm/data/tokenize.py)."""
    from tasks.llm.data.tokenize import run_tokenize

    return run_tokenize(cfg, data_dir)


@task(name="llm-stage", retries=0, cache_policy=NO_CACHE)
def stage_task(stage: str, cfg: PretrainConfig, init_checkpoint: str | None, out_dir: str | None,
               data_dir: str | None, tags: dict[str, str], tracking_uri: str) -> dict[str, Any]:
    """One training stage; submit it under `remote_options(num_cpus=0)`. Not retried: `--resume` continues it."""
    import contextlib
    import os

    from tasks.llm.train.stages import absolute, run_chat_stage, run_pretrain
    from tasks.llm.train.run_folder import progress_log

    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri  # the driver's store, whatever this Ray worker inherited
    # Ray actors' output never reaches Prefect, so relay rank 0's progress file; a single worker runs here,
    # where `log_prints` already carries its prints.
    relay = relay_lines(progress_log(absolute(out_dir or cfg.out_dir)), get_run_logger().info)
    with relay if cfg.world_size > 1 else contextlib.nullcontext():
        if stage == "pretrain":
            summary = run_pretrain(cfg, out_dir, tags)
        else:
            summary = run_chat_stage(stage, cfg, init_checkpoint, out_dir, data_dir, tags)
    return {k: v for k, v in summary.items() if k not in SLIM}


@task(name="llm-curtail", retries=0, cache_policy=NO_CACHE)
def curtail_task(ccfg: CurtailConfig, pcfg: PretrainConfig, data_dir: str | None, tags: dict[str, str],
                 tracking_uri: str) -> dict[str, Any]:
    """Curtailment-aware training; submit it under `remote_options(num_cpus=0)`. Not retried: `--resume` continues it."""
    import os

    from tasks.llm.train.stages import absolute, run_curtail_stage
    from tasks.llm.train.run_folder import progress_log

    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    with relay_lines(progress_log(absolute(ccfg.out_dir)), get_run_logger().info):
        summary = run_curtail_stage(ccfg, pcfg, data_dir, tags)
    return {k: v for k, v in summary.items() if k not in SLIM}


@task(name="llm-eval", **RETRY_TRANSIENT)
def eval_task(cfg: EvalConfig, checkpoint: str, data_dir: str | None, show: int = 0) -> dict[str, Any]:
    import torch

    from tasks.llm.eval.stage import evaluate_checkpoint

    torch.set_num_threads(1)
    return evaluate_checkpoint(cfg, checkpoint, data_dir, show=show)


def _train(stage: str, cfg: PretrainConfig, data_dir: str | None = None) -> dict[str, Any]:
    from tasks.common.tracking import tracking_uri

    logger = get_run_logger()
    logger.info("llm_%s: mode=%s workers=%d depth=%d steps=%d -> %s", stage, cfg.mode, cfg.world_size, cfg.depth,
                cfg.steps, cfg.out_dir)
    with worker_runs_end_with_flow() as tags, remote_options(num_cpus=0):
        summary = stage_task.submit(stage, cfg, None, None, data_dir, tags, tracking_uri()).result()
    logger.info("llm_%s done: %s", stage, {k: summary.get(k) for k in ("val_bpb", "final_train_loss", "tokens_per_s",
                                                                        "precision", "model_dir", "mlflow_run_id")})
    return summary


# ---------------------------------------------------------------- flows

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
    from tasks.llm.preflight import check_tokenize
    from tasks.llm.data.tokenize import log_to_mlflow

    cfg = load_config(TokenizerConfig, "llm.tokenizer", flow_overrides(overrides, vocab_size=vocab_size, corpus=corpus))
    check_tokenize(cfg, data_dir)
    with remote_options(num_cpus=1):
        result = tokenize_task.submit(cfg, data_dir).result()
    result["mlflow_run_id"] = log_to_mlflow(result, cfg)
    get_run_logger().info("llm_tokenize: %s -> %s", result["metrics"], result["out_dir"])
    return result


@flow(name="llm_pretrain", task_runner=task_runner(), log_prints=True)
def llm_pretrain(
    mode: Mode = default("llm.pretrain", "mode"),
    workers: int = default("llm.pretrain", "workers"),
    steps: int = default("llm.pretrain", "steps"),
    depth: int = default("llm.pretrain", "depth"),
    sites: list[dict[str, Any]] = default("llm.pretrain", "sites"),
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pretrain the GPT on the token shards: one process, or DDP / DiLoCo on Ray workers, on one or more sites.

    Args:
        mode: single, ddp or diloco.
        workers: Ray workers for ddp and diloco without sites.
        steps: optimizer steps.
        depth: transformer layers (width = 64 x depth).
        sites: [{name, workers, link: {bandwidth_mbps, latency_ms}, resources, node_label, join_round, leave_round}];
            [] = the workers on this machine.
        overrides: any other key of params.yaml `llm.pretrain`, dotted (e.g. {"diloco.inner_steps": 20}); wins over the fields above.
    """
    from tasks.llm.preflight import check_pretrain

    cfg = load_config(PretrainConfig, "llm.pretrain", flow_overrides(overrides, mode=mode, workers=workers, steps=steps,
                                                                      depth=depth, sites=sites))
    check_pretrain(cfg, log=get_run_logger().info)
    return _train("pretrain", cfg)


def _chat_flow(stage: str, overrides: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    from tasks.llm.preflight import check_chat_stage

    cfg = load_config(CHAT_STAGES[stage], f"llm.{stage}", overrides)
    check_chat_stage(stage, cfg, log=get_run_logger().info)
    return _train(stage, cfg, data_dir)


@flow(name="llm_midtrain", task_runner=task_runner(), log_prints=True)
def llm_midtrain(
    mode: Mode = default("llm.midtrain", "mode"),
    steps: int = default("llm.midtrain", "steps"),
    init_from: str = default("llm.midtrain", "init_from"),
    overrides: dict[str, Any] | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Midtrain on the chat-format task mixture, from the pretrained model.

    Args:
        mode: single, ddp or diloco.
        steps: optimizer steps.
        init_from: checkpoint, run folder or models:/NAME/VERSION to start from.
        overrides: any other key of params.yaml `llm.midtrain`, dotted; wins over the fields above.
        data_dir: public datasets folder (task files such as GSM8K).
    """
    return _chat_flow("midtrain", flow_overrides(overrides, mode=mode, steps=steps, init_from=init_from), data_dir)


@flow(name="llm_sft", task_runner=task_runner(), log_prints=True)
def llm_sft(
    mode: Mode = default("llm.sft", "mode"),
    steps: int = default("llm.sft", "steps"),
    init_from: str = default("llm.sft", "init_from"),
    overrides: dict[str, Any] | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Supervised fine-tuning on padded conversations with the loss on the assistant's tokens.

    Args:
        mode: single, ddp or diloco.
        steps: optimizer steps.
        init_from: checkpoint, run folder or models:/NAME/VERSION to start from.
        overrides: any other key of params.yaml `llm.sft`, dotted; wins over the fields above.
        data_dir: public datasets folder (task files such as GSM8K).
    """
    return _chat_flow("sft", flow_overrides(overrides, mode=mode, steps=steps, init_from=init_from), data_dir)


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

    cfg = load_config(EvalConfig, "llm.eval", flow_overrides(overrides, checkpoint=checkpoint, max_examples=max_examples))
    check_eval(cfg)
    with remote_options(num_cpus=1):
        result = eval_task.submit(cfg, cfg.checkpoint, data_dir, show).result()
    recorded = record_eval(result, cfg)
    get_run_logger().info("llm_eval: bpb %s, %s; report %s", recorded["bpb"],
                          {k: v["accuracy"] for k, v in recorded["tasks"].items()}, recorded["report"])
    return recorded


def curtail_configs(overrides: dict[str, Any]) -> tuple[CurtailConfig, PretrainConfig]:
    """`llm.curtail`, and `llm.pretrain` with its `pretrain` overrides and its out_dir and experiment."""
    ccfg = load_config(CurtailConfig, "llm.curtail", overrides)
    pcfg = load_config(PretrainConfig, "llm.pretrain", {**ccfg.pretrain, "out_dir": ccfg.out_dir,
                                                        "experiment": ccfg.experiment}, named="llm.curtail.pretrain")
    return ccfg, pcfg


@flow(name="llm_curtail", task_runner=task_runner(), log_prints=True)
def llm_curtail(
    policy: PolicyName = default("llm.curtail", "policy"),
    threshold: float = default("llm.curtail", "threshold"),
    target_site_steps: int = default("llm.curtail", "target_site_steps"),
    overrides: dict[str, Any] | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Curtailment-aware training: each site trains only while its grid's carbon intensity is below the threshold.

    Args:
        policy: reactive (start when the MCI drops) or forecast (provision ahead from a forecast).
        threshold: MCI below which a site may train (in llm.curtail.unit).
        target_site_steps: optimizer steps summed over sites (equal tokens across runs).
        overrides: any other key of params.yaml `llm.curtail`, dotted (e.g. {"budget.carbon_kg": 5}).
        data_dir: public datasets folder (MCI traces under energy/; generated traces without one).
    """
    from tasks.common.tracking import tracking_uri
    from tasks.llm.preflight import check_curtail

    ccfg, pcfg = curtail_configs(flow_overrides(overrides, policy=policy, threshold=threshold,
                                                target_site_steps=target_site_steps))
    check_curtail(ccfg, pcfg, data_dir)
    with worker_runs_end_with_flow() as tags, remote_options(num_cpus=0):
        summary = curtail_task.submit(ccfg, pcfg, data_dir, tags, tracking_uri()).result()
    get_run_logger().info("llm_curtail done: %s", {k: summary.get(k) for k in (
        "kg_co2", "energy_kwh", "share_in_windows", "sim_hours", "val_bpb", "tokens", "budget_stop", "mlflow_run_id")})
    return summary


def _stage_config(stage: str, study: StudyConfig, modes: tuple[str, ...]) -> PretrainConfig:
    """The stage's section with the study's overrides, and what every arm shares (seed, workers, ...)."""
    model = PretrainConfig if stage == "pretrain" else CHAT_STAGES[stage]
    settings = {"mode": modes[-1], "workers": study.workers, "seed": study.seed, "experiment": study.experiment,
                "resume": False, "overwrite": study.overwrite, "run_name": f"{'-'.join(modes)}/{stage}"}
    return load_config(model, f"llm.{stage}", {**getattr(study, stage), **settings})


@flow(name="llm_study", task_runner=task_runner(), log_prints=True)
def llm_study(
    workers: int = default("llm.study", "workers"),
    overrides: dict[str, Any] | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """DDP vs DiLoCo through pretrain -> midtrain -> sft, evaluated after every stage.

    Args:
        workers: Ray workers of every distributed stage.
        overrides: any other key of params.yaml `llm.study`, dotted (e.g. {"pretrain.steps": 50}); wins over the field above.
        data_dir: public datasets folder (task files).
    """
    from tasks.llm.preflight import check_study
    from tasks.llm.train.stages import absolute
    from tasks.llm.eval.study_report import STAGES, log_card, write_card

    logger = get_run_logger()
    study = load_config(StudyConfig, "llm.study", flow_overrides(overrides, workers=workers))
    check_study(study)
    out_root = absolute(study.out_dir)
    eval_cfg = load_config(EvalConfig, "llm.eval", {**study.eval, "seed": study.seed})

    with worker_runs_end_with_flow() as flow_tags:
        arms, evals = _run_arms(study, out_root, eval_cfg, data_dir, flow_tags)
    for record in arms.values():
        for i, stage in enumerate(STAGES):
            record["evals"][stage] = evals[tuple(record["modes"][: i + 1])]

    card = write_card(arms, out_root)
    log_card(card, {name: record["mlflow_run_id"] for name, record in arms.items()})
    logger.info("report card: %s", card["report"])
    print(card["markdown"])
    return {"numbers": card["numbers"], "chance": card["chance"], "report": card["report"],
            "metrics": card["metrics"], "mlflow_run_ids": {n: r["mlflow_run_id"] for n, r in arms.items()}}


def _run_arms(study: StudyConfig, out_root: str, eval_cfg: EvalConfig, data_dir: str | None,
              flow_tags: dict[str, str]) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, ...], Any]]:
    """Every arm's stages (a stage shared by arms that begin with the same modes runs once), and their evals."""
    from tasks.common.tracking import tracking_uri
    from tasks.llm.eval.study_report import STAGES, arm_name, start_arm_run

    logger = get_run_logger()
    done: dict[tuple[str, ...], dict[str, Any]] = {}  # modes prefix -> stage summary (shared between arms)
    evals: dict[tuple[str, ...], Any] = {}
    arms: dict[str, dict[str, Any]] = {}
    for modes in study.arms:
        name = arm_name(modes)
        parent_id = start_arm_run(study.experiment, name, flow_tags)
        record: dict[str, Any] = {"modes": list(modes), "mlflow_run_id": parent_id, "stages": {}, "evals": {}}
        init = None
        for i, (stage, mode) in enumerate(zip(STAGES, modes)):
            key = tuple(modes[: i + 1])
            if key in done:
                summary = {**done[key], "shared_with": done[key]["first_arm"]}
                logger.info("%s/%s: shared with arm %s", name, stage, done[key]["first_arm"])
            else:
                out_dir = f"{out_root}/{arm_name(list(key))}/{stage}"
                tags = {"mlflow.parentRunId": parent_id, "arm": name, **flow_tags}
                with remote_options(num_cpus=0):
                    summary = stage_task.submit(stage, _stage_config(stage, study, key), init, out_dir, data_dir,
                                                tags, tracking_uri()).result()
                summary["first_arm"] = name
                done[key] = summary
                with remote_options(num_cpus=1):
                    evals[key] = eval_task.submit(eval_cfg, summary["model_dir"], data_dir)
                logger.info("%s/%s (%s): loss %.4f, comm %.2f MB/worker", name, stage, mode,
                            summary["final_train_loss"], summary["comm_bytes_per_worker"] / 1e6)
            record["stages"][stage] = summary
            init = summary["model_dir"]
        arms[name] = record
    return arms, {key: future.result() for key, future in evals.items()}


FLOWS = [llm_tokenize, llm_pretrain, llm_midtrain, llm_sft, llm_eval, llm_study, llm_curtail]


# ---------------------------------------------------------------- CLI

app = typer.Typer(help="LLM pipeline: tokenize -> pretrain -> midtrain -> sft -> eval (nanochat-style).",
                  no_args_is_help=True)
SET_OPTION = set_option("diloco.inner_steps=20")


def run_tokenize_flow(overrides: dict, data_dir: str | None) -> dict:
    from tasks.llm.preflight import check_tokenize

    check_tokenize(load_config(TokenizerConfig, "llm.tokenizer", overrides), data_dir)
    return run_flow("flows.llm:llm_tokenize", overrides=overrides, data_dir=data_dir)


@app.command()
def tokenize(
    vocab_size: int = typer.Option(None, help="Vocabulary size incl. 256 bytes and 9 special tokens."),
    corpus: str = typer.Option(None, help="Comma-separated files/folders (txt, jsonl, parquet); `generated` = built-in."),
    download_shards: int = typer.Option(None, help="FineWeb-Edu parquet shards to download first (needs internet)."),
    set_: list[str] = set_option("vocab_size=2048"),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Train the BPE tokenizer and encode the corpus into train/val token shards (Prefect flow `llm_tokenize`)."""
    overrides = cli_overrides(set_, vocab_size=vocab_size, corpus=comma_list(corpus), download_shards=download_shards)
    result = run_tokenize_flow(overrides, data_dir)
    typer.echo(json.dumps({k: result[k] for k in ("out_dir", "tokenizer", "metrics", "mlflow_run_id")}, indent=2))


@app.command()
def pretrain(
    mode: str = typer.Option(None, help="single | ddp | diloco (default: params.yaml llm.pretrain.mode)."),
    workers: int = typer.Option(None, help="Ray workers for ddp / diloco."),
    steps: int = typer.Option(None, help="Optimizer steps."),
    sites: str = typer.Option(None, help="Sites joined by emulated links: name[:workers][@mbit_per_s[/latency_ms]],... "
                                         "e.g. a@100/50,b@100/50 (more with --set sites=[...])."),
    resume: bool = typer.Option(None, "--resume/--no-resume", help="Continue from the newest intact checkpoint in out_dir."),
    overwrite: bool = OVERWRITE_OPTION,
    set_: list[str] = SET_OPTION,
) -> None:
    """Pretrain the GPT on the token shards (Prefect flow `llm_pretrain`, Ray workers, MLflow `llm-pretrain`)."""
    from tasks.llm.config import parse_sites
    from tasks.llm.preflight import check_pretrain

    site_list = parse_sites(sites) if sites is not None else None
    overrides = cli_overrides(set_, mode=mode, workers=workers, steps=steps, sites=site_list, resume=resume,
                              overwrite=overwrite)
    check_pretrain(load_config(PretrainConfig, "llm.pretrain", overrides), log=typer.echo)
    _print_stage(run_flow("flows.llm:llm_pretrain", overrides=overrides))


def _run_chat_stage(stage: str, overrides: dict, data_dir: str | None) -> dict:
    from tasks.llm.preflight import check_chat_stage

    check_chat_stage(stage, load_config(CHAT_STAGES[stage], f"llm.{stage}", overrides), log=typer.echo)
    return run_flow(f"flows.llm:llm_{stage}", overrides=overrides, data_dir=data_dir)


def _print_stage(summary: dict) -> None:
    keys = ("stage", "mode", "steps", "final_train_loss", "val_bpb", "tokens_per_s", "mfu", "precision",
            "comm_bytes_per_worker", "sync_rounds", "wall_seconds", "model_dir", "mlflow_run_id")
    typer.echo(json.dumps({k: summary.get(k) for k in keys}, indent=2, default=str))


@app.command()
def midtrain(
    mode: str = typer.Option(None, help="single | ddp | diloco (default: params.yaml llm.midtrain.mode)."),
    steps: int = typer.Option(None, help="Optimizer steps."),
    init_from: str = typer.Option(None, help="Checkpoint, run folder or models:/NAME/VERSION (default: the pretrain run)."),
    overwrite: bool = OVERWRITE_OPTION,
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Midtrain on the chat-format task mixture (Prefect flow `llm_midtrain`, Ray workers)."""
    overrides = cli_overrides(set_, mode=mode, steps=steps, init_from=init_from, overwrite=overwrite)
    _print_stage(_run_chat_stage("midtrain", overrides, data_dir))


@app.command()
def sft(
    mode: str = typer.Option(None, help="single | ddp | diloco (default: params.yaml llm.sft.mode)."),
    steps: int = typer.Option(None, help="Optimizer steps."),
    init_from: str = typer.Option(None, help="Checkpoint, run folder or models:/NAME/VERSION (default: the midtrain run)."),
    overwrite: bool = OVERWRITE_OPTION,
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Supervised fine-tuning on padded conversation batches with the loss mask (Prefect flow `llm_sft`)."""
    overrides = cli_overrides(set_, mode=mode, steps=steps, init_from=init_from, overwrite=overwrite)
    _print_stage(_run_chat_stage("sft", overrides, data_dir))


@app.command("eval")
def eval_(
    checkpoint: str = typer.Option(None, help="Checkpoint, run folder or models:/NAME/VERSION (default: params.yaml)."),
    max_examples: int = typer.Option(None, help="Examples per task; 0 = all."),
    show: int = typer.Option(0, help="Print this many generations per generative task."),
    set_: list[str] = set_option("max_examples=20"),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Evaluate a checkpoint: val bits per byte, multiple choice by letter logits, generative tasks (Prefect flow `llm_eval`)."""
    from tasks.llm.preflight import check_eval

    overrides = cli_overrides(set_, checkpoint=checkpoint, max_examples=max_examples)
    check_eval(load_config(EvalConfig, "llm.eval", overrides))
    result = run_flow("flows.llm:llm_eval", overrides=overrides, data_dir=data_dir, show=show)
    typer.echo(open(result["report"]).read())
    typer.echo(json.dumps({"bpb": result["bpb"], **{k: v["accuracy"] for k, v in result["tasks"].items()},
                           "mlflow_run_id": result["mlflow_run_id"]}))


def run_study_flow(overrides: dict, data_dir: str | None) -> dict:
    from tasks.llm.preflight import check_study

    check_study(load_config(StudyConfig, "llm.study", overrides))
    return run_flow("flows.llm:llm_study", overrides=overrides, data_dir=data_dir)


@app.command()
def study(overwrite: bool = OVERWRITE_OPTION, set_: list[str] = set_option("pretrain.steps=100"),
          data_dir: str = DATA_DIR_OPTION) -> None:
    """DDP vs DiLoCo through pretrain -> midtrain -> sft, evaluated per stage (Prefect flow `llm_study`)."""
    result = run_study_flow(cli_overrides(set_, overwrite=overwrite), data_dir)
    typer.echo(open(result["report"]).read())
    typer.echo(json.dumps(result["numbers"]))


@app.command()
def curtail(
    policy: str = typer.Option(None, help="reactive | forecast (default: params.yaml llm.curtail.policy)."),
    threshold: float = typer.Option(None, help="MCI below which a site may train (llm.curtail.unit)."),
    target_site_steps: int = typer.Option(None, help="Optimizer steps summed over sites."),
    resume: bool = typer.Option(None, "--resume/--no-resume", help="Continue from the newest intact checkpoint."),
    overwrite: bool = OVERWRITE_OPTION,
    set_: list[str] = set_option("budget.carbon_kg=5"),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Curtailment-aware DiLoCo across sites that train only in clean-energy windows (Prefect flow `llm_curtail`)."""
    from tasks.llm.preflight import check_curtail

    overrides = cli_overrides(set_, policy=policy, threshold=threshold, target_site_steps=target_site_steps)
    for key, value in (("resume", resume), ("overwrite", overwrite)):
        if value is not None:
            overrides[f"pretrain.{key}"] = value
    check_curtail(*curtail_configs(overrides), data_dir)
    summary = run_flow("flows.llm:llm_curtail", overrides=overrides, data_dir=data_dir)
    typer.echo(json.dumps({k: summary.get(k) for k in ("variant", "kg_co2", "energy_kwh", "idle_kwh", "share_in_windows",
                                                       "sim_hours", "val_bpb", "tokens", "budget_stop", "out_dir",
                                                       "mlflow_run_id")}, indent=2, default=str))


@app.command()
def chat(
    checkpoint: str = typer.Option("results/llm/sft", help="Checkpoint, run folder or models:/NAME/VERSION to talk to."),
    prompt: str = typer.Option(None, "--prompt", "-p", help="Ask one question, print the answer and exit."),
    temperature: float = typer.Option(0.6, help="0 = greedy."),
    top_k: int = typer.Option(50, help="Sample among the k most likely tokens; 0 = all."),
    max_tokens: int = typer.Option(256, help="Longest reply in tokens."),
) -> None:
    """Talk to a trained checkpoint in the terminal (calculator tool on; 'clear' resets, 'quit' or Ctrl-D ends)."""
    from tasks.llm.eval.chat_session import ChatSession
    from tasks.llm.preflight import check_checkpoint

    check_checkpoint(checkpoint, "--checkpoint")
    session = ChatSession.from_checkpoint(checkpoint, temperature=temperature, top_k=top_k or None,
                                          max_tokens=max_tokens)
    if prompt is not None:
        for piece in session.reply(prompt):
            typer.echo(piece, nl=False)
        typer.echo()
        return
    typer.echo(f"seedflow chat with {session.checkpoint} ('clear' resets, 'quit' or Ctrl-D ends)")
    while True:
        try:
            text = input("\nyou> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if text in ("quit", "exit"):
            break
        if text == "clear":
            session.clear()
            continue
        if text:
            typer.echo("bot> ", nl=False)
            for piece in session.reply(text):
                typer.echo(piece, nl=False)
            typer.echo()


@app.command("tasks")
def show_tasks(
    name: str = typer.Argument(None, help="Task to show (default: list the tasks)."),
    n: int = typer.Option(3, help="Examples to show."),
    split: str = typer.Option("train", help="train | test (synthetic tasks also val)."),
    tokenizer: str = typer.Option(None, help="tokenizer.json used to render, relative to the project root (default: the "
                                             "one `seedflow llm tokenize` writes, params.yaml llm.tokenizer.out_dir)."),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Show a task's conversations as the model sees them; [bracketed] tokens are not trained on."""
    from tasks.common.paths import project_root
    from tasks.llm.data.chat_format import render_conversation, visualize
    from tasks.llm.data.datasets import TASKS, build_task
    from tasks.llm.data.tokenizer import Tokenizer

    if name is None:
        typer.echo("\n".join(f"{key:10s} {cls.eval_type:12s} {(cls.__doc__ or '').strip().partition(chr(10))[0]}"
                             for key, cls in TASKS.items()))
        return
    path = project_root() / (tokenizer or f"{default('llm.tokenizer', 'out_dir')}/tokenizer.json")
    if not path.is_file():
        raise InputError(f"tokenizer {path} not found: run `seedflow llm tokenize` first, or pass --tokenizer "
                         "(e.g. --tokenizer results/demo/llm/tokens/tokenizer.json after `make demo`)")
    task_data = build_task(name, split, data_dir)
    tok = Tokenizer.load(path)
    typer.echo(f"{name}: {len(task_data)} examples ({task_data.eval_type})")
    for i in range(min(n, len(task_data))):
        ids, mask = render_conversation(tok, task_data[i])
        typer.echo(f"\n--- example {i} ({len(ids)} tokens, {sum(mask)} trained)\n{visualize(tok, ids, mask)}")


# ---------------------------------------------------------------- benchmarks and demo

def bench_pretrain(
    depths: str = typer.Option("4,8,12", help="Depths of the single-process throughput models (comma-separated)."),
    seq_len: int = typer.Option(512, help="Sequence length of the throughput models."),
    vocab: int = typer.Option(8192, help="Vocabulary of the throughput models (random tokens)."),
    accum: int = typer.Option(8, help="Micro-batches of 8 sequences per optimizer step in the throughput runs."),
    compare_steps: int = typer.Option(200, help="Optimizer steps of each DDP / DiLoCo run (same tokens, same seed); 0 skips it."),
    inner_steps: int = typer.Option(50, help="DiLoCo H."),
    seeds: str = typer.Option("0,1,2", help="Seeds of the DDP / DiLoCo comparison (bpb figures are their mean)."),
    precision: str = typer.Option("auto", help="auto | bf16 | fp32 for the throughput runs (auto: bf16 only where fast)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda for the throughput runs (auto: CUDA when present)."),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Tokens/s and MFU (vs the matmul peak of the dtype in use on the device, measured here) of compiled
    single-process training per depth, the eager trainer at the first depth as baseline, then DDP vs DiLoCo
    on 2 Ray workers: final val bpb, bytes per worker and their ratio, wall seconds. Names the CPU, device
    and precision."""
    from tasks.common.precision import hardware_tags
    from tasks.llm.benches.pretrain import compare_ddp_diloco, single_throughput
    from tasks.llm.train.device import resolve_device

    depth_list, seed_list = int_list(depths, "--depths"), int_list(seeds, "--seeds")
    device = resolve_device(device)
    compiled = [single_throughput(d, seq_len, vocab, accum=accum, compile=True, precision=precision, device=device)
                for d in depth_list]
    eager = single_throughput(compiled[0]["depth"], seq_len, vocab, accum=accum, compile=False, precision=precision,
                              device=device)
    out = {"hardware": hardware_tags(), "device": compiled[0]["device"], "precision": compiled[0]["precision"],
           "single": compiled, "single_eager": eager,
           "compile_speedup": round(compiled[0]["tokens_per_s"] / eager["tokens_per_s"], 2)}
    if compare_steps:
        out.update(compare_ddp_diloco(data_dir, compare_steps, inner_steps, seeds=tuple(seed_list)))
    print(json.dumps(out))


def bench_study(data_dir: str = DATA_DIR_OPTION) -> None:
    """The study at a small fixed size (`llm.bench_study` overrides); last line: the report card's numbers."""
    from flows.runtime import prefect_api
    from tasks.common.config import read_params
    from tasks.common.precision import hardware_tags

    settings = read_params()["llm"].get("bench_study", {})
    tokens_dir = settings.get("tokenizer", {}).get("out_dir", "results/bench/llm_study/tokens")
    study_overrides = {**settings.get("study", {}), "pretrain.tokens_dir": tokens_dir, "eval.tokens_dir": tokens_dir}
    start = time.perf_counter()
    with prefect_api():  # one server for both flows
        run_tokenize_flow(settings.get("tokenizer", {}), data_dir)
        result = run_study_flow(study_overrides, data_dir)
    print(json.dumps({"hardware": hardware_tags(), "report_card": result["numbers"], "chance": result["chance"],
                      "report": result["report"], "wall_s": round(time.perf_counter() - start, 1)}))


def bench_sdc(
    steps: int = typer.Option(100, help="Optimizer steps of every run (the small GPT: depth 2, 64 tokens x 8 sequences)."),
    seeds: str = typer.Option("0,1,2,3,4,5,6,7", help="Injection seeds per bit class and stage (one fault event per trial)."),
    p: float = typer.Option(0.05, help="Chance per step, from step 10, that a fault event starts."),
    schedule_p: float = typer.Option(0.1, help="p of the full-schedule (many-event) runs behind the val bpb figures."),
    spike_nats: float = typer.Option(0.5, help="Harmful: a train loss this far above the fault-free twin's at a step."),
    drift: float = typer.Option(0.05, help="Harmful: final weights at this relative L2 distance from the twin's."),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Silent data corruption: bit flips (sign, high / low exponent, mantissa) in a Linear's output or its gradient,
    harmful or not without the guard, flagged and prevented with it; false alarms, val bpb and guard overhead."""
    from tasks.common.precision import hardware_tags
    from tasks.llm.benches.sdc import study

    start = time.perf_counter()
    out = study(data_dir, steps=steps, seeds=tuple(int_list(seeds, "--seeds")), p=p, schedule_p=schedule_p,
                spike_nats=spike_nats, drift=drift)
    print(json.dumps({"hardware": hardware_tags(), **out, "wall_s": round(time.perf_counter() - start, 1)}))


def bench_diloco_wan(
    bandwidths: str = typer.Option("1000,100,10", help="Link bandwidths in Mbit/s (comma-separated)."),
    latency_ms: float = typer.Option(50.0, help="Link latency."),
    rounds: int = typer.Option(20, help="DiLoCo outer rounds of the small regime (the fault run kills a site at half of them)."),
    inner_steps: int = typer.Option(30, help="DiLoCo H of the small regime; every run trains rounds x H steps on each of 2 sites."),
    depth: int = typer.Option(1, help="Small regime's model depth (width 64 x depth; bytes as tokens)."),
    batch_size: int = typer.Option(4, help="Sequences per step per site (small regime)."),
    seq_len: int = typer.Option(64, help="Sequence length (small regime)."),
    outer_lr: float = typer.Option(0.5, help="DiLoCo outer lr (Nesterov)."),
    outer_momentum: float = typer.Option(0.5, help="DiLoCo outer momentum."),
    fault_sites: int = typer.Option(4, help="Sites of the fault run and of its no-fault twin."),
    compute_rounds: int = typer.Option(2, help="Outer rounds of the compute-bound regime (depth 4, seq 256); 0 skips it."),
    compute_inner_steps: int = typer.Option(3, help="DiLoCo H of the compute-bound regime."),
    paper_steps: int = typer.Option(2000, help="Steps per site of the paper-outer comparison (lr 0.7, momentum 0.9); 0 skips it."),
    paper_inner_steps: int = typer.Option(100, help="DiLoCo H of the paper-outer comparison."),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """DDP vs DiLoCo vs int8 DiLoCo between 2 sites over emulated links, per regime (small; compute-bound), equal
    tokens and seed: wall split into compute, comm and overhead, bytes per worker, val bpb, the link model's error;
    DiLoCo with one site killed -9; the paper's outer step at H=100 against DDP."""
    from tasks.common.precision import hardware_tags
    from tasks.llm.benches.diloco_wan import compute_bound, run

    start = time.perf_counter()
    mbps = tuple(float(b) for b in comma_list(bandwidths) or [])
    regimes = [compute_bound(compute_rounds, compute_inner_steps)] if compute_rounds else []
    out = run(data_dir, mbps, latency_ms, rounds, inner_steps, depth, batch_size, seq_len, outer_lr, outer_momentum,
              fault_sites, regimes=regimes, paper_steps=paper_steps, paper_inner_steps=paper_inner_steps)
    print(json.dumps({"hardware": hardware_tags(), "precision": "fp32", **out, "wall_s": round(time.perf_counter() - start, 1)}))


def bench_curtail(
    target_site_steps: int = typer.Option(3000, help="Optimizer steps summed over sites, every run."),
    depth: int = typer.Option(1, help="Model depth (width 64 x depth; bytes as tokens)."),
    batch_size: int = typer.Option(4, help="Sequences per step per site."),
    seq_len: int = typer.Option(64, help="Sequence length."),
    start_days: int = typer.Option(12, min=1, help="Start days spread over the trace for the emission figures "
                                                   "(plans only, no training)."),
    set_: list[str] = set_option("threshold=200"),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Curtailment-aware training (reactive and forecast policies, the two-site variant) against one site training
    non-stop in each region, at equal IID tokens: kg CO2 over start days beside the trace's floor, energy, share
    inside windows, simulated hours, val bpb."""
    from tasks.common.paths import data_dir as resolve_data_dir
    from tasks.common.precision import hardware_tags
    from tasks.llm.benches.curtail import run
    from tasks.llm.curtail.traces import site_traces
    from tasks.llm.benches.diloco_wan import byte_source

    start = time.perf_counter()
    ccfg, pcfg = curtail_configs({**cli_overrides(set_), "target_site_steps": target_site_steps})
    pcfg = PretrainConfig.model_validate({**pcfg.model_dump(), "depth": depth, "sequence_len": seq_len,
                                          "device_batch_size": batch_size, "register_model": False})
    traces = site_traces(ccfg, resolve_data_dir(data_dir))
    out = run(ccfg, pcfg, byte_source(data_dir, batch_size, seq_len), traces, start_days=start_days)
    print(json.dumps({"hardware": hardware_tags(), **out, "wall_s": round(time.perf_counter() - start, 1)}))


BENCHES = {"pretrain": bench_pretrain, "llm-study": bench_study, "sdc": bench_sdc, "diloco-wan": bench_diloco_wan,
           "curtail": bench_curtail}


def demo(data_dir: str | None) -> str:
    """Tokenize tinyshakespeare, then a tiny pretrain in DDP and in DiLoCo: two runs side by side in MLflow."""
    from tasks.common.config import read_params

    settings = read_params().get("demo", {}).get("llm", {})
    run_tokenize_flow(settings.get("tokenizer", {}), data_dir)
    lines = []
    for mode in ("ddp", "diloco"):  # the demo replaces its own earlier results
        overrides = {**settings.get("pretrain", {}), "mode": mode, "out_dir": f"results/demo/llm/pretrain_{mode}",
                     "run_name": f"demo-{mode}", "overwrite": True}
        if mode == "diloco":
            overrides["sites"] = settings.get("diloco_sites", [])
        s = run_flow("flows.llm:llm_pretrain", overrides=overrides)
        lines.append(f"{mode}: val bpb {s['val_bpb']:.3f}, {s['comm_bytes_per_worker'] / 1e6:.1f} MB/worker, "
                     f"{s['wall_seconds']:.0f}s, {s['precision']}")
    c = run_flow("flows.llm:llm_curtail", overrides=settings.get("curtail", {}), data_dir=data_dir)
    return (f"llm pretrain ({'; '.join(lines)}) in MLflow experiment 'llm-pretrain'; curtailment-aware run "
            f"{c['kg_co2']:.2f} kg CO2, {c['share_in_windows']:.0%} of energy in clean windows, {c['sim_hours']:.0f} "
            f"simulated hours, val bpb {c['val_bpb']:.3f} in 'llm-curtail'; results/demo/llm/")
