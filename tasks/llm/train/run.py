"""`run_training`, the entry point of every stage: the run folder, the MLflow run, then a driver.

It takes a config, a `BatchSource`, optionally a checkpoint to start from and a stage name for
MLflow, and hands the training to one machine's driver (tasks/llm/train/local.py: one worker, or
DDP workers on Ray) or, across sites, to the hub (tasks/llm/sites/hub.py), whose workers take
their steps with the same step core (tasks/llm/train/step.py).
"""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

from tasks.common.atomic import write_json, write_text
from tasks.common.model_registry import is_model_uri
from tasks.common.paths import project_root
from tasks.common.progress import Progress
from tasks.llm.config import PretrainConfig
from tasks.llm.data.batches import BatchSource
from tasks.llm.sdc.events import write_events
from tasks.llm.train.build import plan_steps, require_cpp_compiler
from tasks.llm.train.checkpoint import read_meta, resolve_checkpoint
from tasks.llm.train.device import resolve_device
from tasks.llm.train.local import run_on_ray, train_worker
from tasks.llm.train.run_folder import RunContext, check_out_dir, choose_resume, progress_log


def run_training(cfg: PretrainConfig, source: BatchSource, init_checkpoint: str | None = None,
                 out_dir: str | Path | None = None, stage: str = "pretrain", tags: dict[str, str] | None = None,
                 schedule: list | None = None) -> dict:
    """Train one stage and return its summary; logs one MLflow run in `cfg.experiment`.

    `init_checkpoint` (midtrain / SFT) starts from those weights with fresh optimizers;
    `cfg.resume` continues this stage's own last checkpoint in `out_dir`; `schedule` (a list of
    tasks/llm/sites/hub.py `RoundPlan`) says which sites train in which round, instead of the config's.
    """
    out = Path(out_dir or project_root() / cfg.out_dir).resolve()
    init = str(resolve_checkpoint(init_checkpoint)) if init_checkpoint else None
    steps, _ = plan_steps(cfg, source)
    device = resolve_device(cfg.device)
    if cfg.compile:
        require_cpp_compiler()
    check_out_dir(cfg, out)
    say = Progress(steps, stage, log_file=progress_log(out)).say
    resume_from = choose_resume(cfg, out, steps, log=lambda line: say(f"[{stage}] {line}")) if cfg.resume else None
    if cfg.overwrite and not cfg.resume:  # asked for: the earlier run's checkpoints go; its model/ stays until replaced
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    tags = {**(tags or {}), **({"init_model": init_checkpoint} if is_model_uri(init_checkpoint) else {})}
    ctx = RunContext(out_dir=str(out), stage=stage, init_checkpoint=init, resume_from=str(resume_from) if resume_from else None,
                     tags=tags, device=device)
    client, run_id = _start_mlflow_run(cfg, ctx, out, steps)
    ctx.mlflow_run_id, ctx.tracking_uri = run_id, client.tracking_uri if client else None
    start = time.perf_counter()
    try:
        if cfg.on_hub:
            from tasks.llm.sites.hub import run_on_hub  # the hub trains with this package: imported when used

            results = [run_on_hub(cfg, source, ctx, schedule)]
        elif cfg.world_size == 1:
            results = [train_worker(cfg, source, 0, 1, ctx)]
        else:
            results = run_on_ray(cfg, source, ctx)
    except BaseException:
        if client:
            client.set_terminated(run_id, status="FAILED")
        raise
    summary = results[0]
    if "sdc_events" in summary:
        summary.update(write_events(out, [r.pop("sdc_events") for r in results]))
    summary.update(wall_seconds=time.perf_counter() - start, mlflow_run_id=run_id, out_dir=str(out))
    _finish(summary, out, client, run_id, cfg.register_model)
    return summary


def _start_mlflow_run(cfg: PretrainConfig, ctx: RunContext, out: Path, steps: int):
    """Create (or, when resuming, reopen) the stage's MLflow run in the driver."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from tasks.common.tracking import use_experiment

    experiment_id = use_experiment(cfg.experiment)
    client = MlflowClient(mlflow.get_tracking_uri())
    run_id = read_meta(ctx.resume_from).get("mlflow_run_id") if ctx.resume_from else None
    if run_id:
        client.update_run(run_id, status="RUNNING")
        return client, run_id
    name = cfg.run_name or default_run_name(cfg, ctx.stage)
    tags = {"stage": ctx.stage, "mode": cfg.mode, **ctx.tags}
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    params = _flatten(cfg.model_dump(mode="json"))
    params.update(planned_steps=steps, init_checkpoint=ctx.init_checkpoint or "")
    from mlflow.entities import Param

    client.log_batch(run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
    return client, run_id


def default_run_name(cfg: PretrainConfig, stage: str) -> str:
    """Stage, mode, depth, the sites or workers, and a short random suffix: two runs alike are told apart."""
    where = "+".join(s.name for s in cfg.sites) if cfg.sites else f"{cfg.world_size}w"
    return f"{stage}-{cfg.mode}-d{cfg.depth}-{where}-{secrets.token_hex(2)}"


def _finish(summary: dict, out: Path, client, run_id: str, register: bool) -> None:
    """metrics.json (DVC metrics) and loss.csv (DVC plot), logged to the MLflow run too, with the model."""
    from mlflow.entities import Metric

    scalars = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}
    write_json(out / "metrics.json", scalars)
    write_text(out / "loss.csv", "step,train_loss\n" + "".join(f"{i + 1},{v:.6f}\n" for i, v in enumerate(summary["history"])))
    if client:
        now = int(time.time() * 1000)
        final = {f"final_{k}": float(v) for k, v in scalars.items() if k.startswith("sdc_") or k in (
            "val_bpb", "tokens_per_s", "mfu", "comm_bytes_per_worker", "comm_seconds", "sync_rounds", "wall_seconds")}
        client.log_batch(run_id, metrics=[Metric(k, v, now, summary["steps"]) for k, v in final.items()])
        for name in ("metrics.json", "loss.csv") + (("sdc_events.csv",) if "sdc_flag_steps" in summary else ()):
            client.log_artifact(run_id, str(out / name))
        if summary["stage"] != "bench":  # benchmarks train throwaway models in temporary folders
            summary.update(_log_model(client, run_id, summary, register))
        client.set_terminated(run_id, status="FINISHED")


def _log_model(client, run_id: str, summary: dict, register: bool) -> dict[str, str]:
    """The final model as the run's MLflow model, registered as seedflow-llm-<stage> when `register`."""
    from tasks.llm.model_registry import log_checkpoint

    tags = {"stage": summary["stage"], "mode": summary["mode"], "precision": summary["precision"]}
    logged = log_checkpoint(run_id, Path(summary["model_dir"]), tags, register)
    if "registered_model" in logged:
        client.set_tag(run_id, "registered_model", logged["registered_model"])
    return logged


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
