"""Prefect flows after pretraining: `llm_midtrain`, `llm_sft`, `llm_eval` and the study `llm_study`.

Training stages run as Prefect tasks holding no Ray CPU (their DDP / DiLoCo workers are Ray
actors that need the cores); evaluation tasks hold one CPU. The study runs the three arms
(DDP->DDP->DDP, DiLoCo->DiLoCo->DiLoCo, DiLoCo->DDP->DDP) with one seed and one token budget;
arms that begin with the same modes share those stages (same seed and data: the same run).
Each arm is an MLflow parent run with its stage runs as children; the report card is logged there
and written to `results/llm/study/` (DVC metrics).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect_ray.context import remote_options

from flows.retry import RETRY_TRANSIENT
from tasks.common.ray_runtime import task_runner

SLIM = ("history", "evals")  # per-step lists stay in the stage's own files, not in flow results


@task(name="llm-stage", retries=0)
def stage_task(stage: str, cfg_dict: dict[str, Any], init_checkpoint: str | None, out_dir: str | None,
               data_dir: str | None, tags: dict[str, str], tracking_uri: str | None = None) -> dict[str, Any]:
    import os

    if tracking_uri:  # the driver's store, whatever this Ray worker inherited
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    from tasks.llm.config import CHAT_STAGES, PretrainConfig
    from tasks.llm.stages import run_chat_stage, run_pretrain

    if stage == "pretrain":
        summary = run_pretrain(PretrainConfig.model_validate(cfg_dict), out_dir, tags)
    else:
        summary = run_chat_stage(stage, CHAT_STAGES[stage].model_validate(cfg_dict), init_checkpoint, out_dir, data_dir, tags)
    return {k: v for k, v in summary.items() if k not in SLIM}


@task(name="llm-eval", **RETRY_TRANSIENT)
def eval_task(cfg_dict: dict[str, Any], checkpoint: str, data_dir: str | None, show: int = 0) -> dict[str, Any]:
    import torch

    from tasks.llm.config import EvalConfig
    from tasks.llm.eval_stage import evaluate_checkpoint

    torch.set_num_threads(1)
    return evaluate_checkpoint(EvalConfig.model_validate(cfg_dict), checkpoint, data_dir, show=show)


def _chat_flow(stage: str, overrides: dict[str, Any] | None, data_dir: str | None) -> dict[str, Any]:
    from tasks.common.tracking import tracking_uri
    from tasks.common.config import load_config
    from tasks.llm.config import CHAT_STAGES

    cfg = load_config(CHAT_STAGES[stage], f"llm.{stage}", overrides)
    get_run_logger().info("llm_%s: mode=%s workers=%d from %s", stage, cfg.mode, cfg.world_size, cfg.init_from)
    with remote_options(num_cpus=0):
        return stage_task.submit(stage, cfg.model_dump(mode="json"), None, None, data_dir, {}, tracking_uri()).result()


@flow(name="llm_midtrain", task_runner=task_runner(), log_prints=True)
def llm_midtrain(overrides: dict[str, Any] | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """Midtrain on the chat task mixture; `overrides` are dotted keys of params.yaml `llm.midtrain`."""
    return _chat_flow("midtrain", overrides, data_dir)


@flow(name="llm_sft", task_runner=task_runner(), log_prints=True)
def llm_sft(overrides: dict[str, Any] | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """Supervised fine-tuning on padded, masked conversations; overrides of params.yaml `llm.sft`."""
    return _chat_flow("sft", overrides, data_dir)


@flow(name="llm_eval", task_runner=task_runner(), log_prints=True)
def llm_eval(overrides: dict[str, Any] | None = None, data_dir: str | None = None, show: int = 0) -> dict[str, Any]:
    """Evaluate a checkpoint (val bits per byte and every task's score); overrides of params.yaml `llm.eval`."""
    from tasks.common.config import load_config
    from tasks.llm.config import EvalConfig
    from tasks.llm.eval_stage import record_eval
    from tasks.llm.preflight import check_eval

    cfg = load_config(EvalConfig, "llm.eval", overrides)
    check_eval(cfg)
    with remote_options(num_cpus=1):
        result = eval_task.submit(cfg.model_dump(mode="json"), cfg.checkpoint, data_dir, show).result()
    recorded = record_eval(result, cfg)
    get_run_logger().info("llm_eval: bpb %s, %s; report %s", recorded["bpb"],
                          {k: v["accuracy"] for k, v in recorded["tasks"].items()}, recorded["report"])
    return recorded


def _stage_config(stage: str, study, modes: tuple[str, ...]) -> dict[str, Any]:
    from tasks.common.config import load_config
    from tasks.llm.config import CHAT_STAGES, PretrainConfig

    model = PretrainConfig if stage == "pretrain" else CHAT_STAGES[stage]
    cfg = load_config(model, f"llm.{stage}", getattr(study, stage))
    settings = {"mode": modes[-1], "workers": study.workers, "seed": study.seed, "experiment": study.experiment,
                "resume": False, "overwrite": study.overwrite, "run_name": f"{'-'.join(modes)}/{stage}"}
    for key, value in settings.items():
        setattr(cfg, key, value)  # validated assignment
    return cfg.model_dump(mode="json")


@flow(name="llm_study", task_runner=task_runner(), log_prints=True)
def llm_study(overrides: dict[str, Any] | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """DDP vs DiLoCo through pretrain -> midtrain -> sft, evaluated after every stage.

    `overrides` are dotted keys of params.yaml `llm.study` (e.g. {"pretrain.steps": 50}).
    """
    from tasks.common.config import load_config
    from tasks.common.tracking import tracking_uri
    from tasks.llm.config import EvalConfig, StudyConfig
    from tasks.llm.preflight import check_study
    from tasks.llm.stages import absolute
    from tasks.llm.study_report import STAGES, arm_name, log_card, start_arm_run, write_card

    logger = get_run_logger()
    study = load_config(StudyConfig, "llm.study", overrides)
    check_study(study)
    out_root = absolute(study.out_dir)
    eval_cfg = load_config(EvalConfig, "llm.eval", {**study.eval, "seed": study.seed}).model_dump(mode="json")

    done: dict[tuple[str, ...], dict[str, Any]] = {}  # modes prefix -> stage summary (shared between arms)
    evals: dict[tuple[str, ...], Any] = {}
    arms: dict[str, dict[str, Any]] = {}
    for modes in study.arms:
        name = arm_name(modes)
        parent_id = start_arm_run(study.experiment, name)
        record: dict[str, Any] = {"modes": list(modes), "mlflow_run_id": parent_id, "stages": {}, "evals": {}}
        init = None
        for i, (stage, mode) in enumerate(zip(STAGES, modes)):
            key = tuple(modes[: i + 1])
            if key in done:
                summary = {**done[key], "shared_with": done[key]["first_arm"]}
                logger.info("%s/%s: shared with arm %s", name, stage, done[key]["first_arm"])
            else:
                out_dir = f"{out_root}/{arm_name(list(key))}/{stage}"
                tags = {"mlflow.parentRunId": parent_id, "arm": name}
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

    evals = {key: future.result() for key, future in evals.items()}
    for record in arms.values():
        for i, stage in enumerate(STAGES):
            record["evals"][stage] = evals[tuple(record["modes"][: i + 1])]

    card = write_card(arms, out_root)
    log_card(card, {name: record["mlflow_run_id"] for name, record in arms.items()})
    logger.info("report card: %s", card["report"])
    print(card["markdown"])
    return {"numbers": card["numbers"], "chance": card["chance"], "report": card["report"],
            "metrics": card["metrics"], "mlflow_run_ids": {n: r["mlflow_run_id"] for n, r in arms.items()}}
