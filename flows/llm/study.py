"""The `llm_study` flow: DDP vs DiLoCo through pretrain -> midtrain -> sft, evaluated after every stage.

The arms are DDP->DDP->DDP, DiLoCo x3 and DiLoCo->DDP->DDP with one seed and budget; arms that begin
with the same modes share those stages (run once).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect_ray.context import remote_options

from flows.llm.checks import at_flow_start
from flows.llm.evaluation import eval_task
from flows.llm.training import stage_task
from flows.options import default, flow_overrides
from flows.runtime import task_runner, worker_runs_end_with_flow
from tasks.common.config import load_config
from tasks.llm.config import CHAT_STAGES, EvalConfig, PretrainConfig, StudyConfig


def study_config(overrides: dict[str, Any]) -> StudyConfig:
    return load_config(StudyConfig, "llm.study", overrides)


def _stage_config(stage: str, study: StudyConfig, modes: tuple[str, ...]) -> PretrainConfig:
    """The stage's section with the study's overrides, and what every arm shares (seed, workers, ...)."""
    model = PretrainConfig if stage == "pretrain" else CHAT_STAGES[stage]
    settings = {"mode": modes[-1], "workers": study.workers, "seed": study.seed, "experiment": study.experiment,
                "resume": False, "overwrite": study.overwrite, "run_name": f"{'-'.join(modes)}/{stage}"}
    return load_config(model, f"llm.{stage}", {**getattr(study, stage), **settings})


@flow(name="llm_study", task_runner=task_runner(), log_prints=True)
def llm_study(
    workers: int = default("llm.study", "workers"),
    overwrite: bool = default("llm.study", "overwrite"),
    overrides: dict[str, Any] | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """DDP vs DiLoCo through pretrain -> midtrain -> sft, evaluated after every stage.

    Args:
        workers: Ray workers of every distributed stage.
        overwrite: replace an earlier study in out_dir (without it such a study is refused).
        overrides: any other key of params.yaml `llm.study`, dotted (e.g. {"pretrain.steps": 50}); wins over the fields above.
        data_dir: public datasets folder (task files).
    """
    from tasks.llm.eval.study_report import STAGES, log_card, write_card
    from tasks.llm.preflight import check_study
    from tasks.llm.train.stages import absolute

    logger = get_run_logger()
    study = study_config(flow_overrides(overrides, workers=workers, overwrite=overwrite))
    data_dir = at_flow_start(lambda _: check_study(study), data_dir)
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
