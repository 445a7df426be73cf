"""The `llm_curtail` flow: curtailment-aware DiLoCo, each site training only in its grid's clean windows."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_ray.context import remote_options

from flows.llm.checks import at_flow_start
from flows.llm.training import relayed_progress, slim
from flows.options import default, flow_overrides
from flows.runtime import task_runner, worker_runs_end_with_flow
from tasks.common.config import load_config
from tasks.llm.config import PretrainConfig
from tasks.llm.curtail.config import CurtailConfig, PolicyName


@task(name="llm-curtail", retries=0, cache_policy=NO_CACHE, log_prints=False)
def curtail_task(ccfg: CurtailConfig, pcfg: PretrainConfig, data_dir: str | None, tags: dict[str, str],
                 tracking_uri: str) -> dict[str, Any]:
    """Submit it under `remote_options(num_cpus=0)`; progress as in flows/llm/training.py. Not retried: `resume` continues it."""
    import os

    from tasks.llm.train.stages import absolute, run_curtail_stage

    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    with relayed_progress(absolute(ccfg.out_dir)):
        summary = run_curtail_stage(ccfg, pcfg, data_dir, tags)
    return slim(summary)


def curtail_configs(overrides: dict[str, Any]) -> tuple[CurtailConfig, PretrainConfig]:
    """`llm.curtail`, and `llm.pretrain` with its `pretrain` overrides and its out_dir and experiment."""
    ccfg = load_config(CurtailConfig, "llm.curtail", overrides)
    pcfg = load_config(PretrainConfig, "llm.pretrain", {**ccfg.pretrain, "out_dir": ccfg.out_dir,
                                                        "experiment": ccfg.experiment}, named="llm.curtail.pretrain")
    return ccfg, pcfg


def training_default(key: str) -> Any:
    """The curtailment run's value of a training key: its `pretrain` overrides, else llm.pretrain's."""
    return (default("llm.curtail", "pretrain") or {}).get(key, default("llm.pretrain", key))


@flow(name="llm_curtail", task_runner=task_runner(), log_prints=True)
def llm_curtail(
    policy: PolicyName = default("llm.curtail", "policy"),
    threshold: float = default("llm.curtail", "threshold"),
    target_site_steps: int = default("llm.curtail", "target_site_steps"),
    resume: bool = training_default("resume"),
    overwrite: bool = training_default("overwrite"),
    overrides: dict[str, Any] | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Curtailment-aware training: each site trains only while its grid's carbon intensity is below the threshold.

    Args:
        policy: reactive (start when the MCI drops) or forecast (provision ahead from a forecast).
        threshold: MCI below which a site may train (in llm.curtail.unit).
        target_site_steps: optimizer steps summed over sites (equal tokens across runs).
        resume: continue from the newest intact checkpoint in out_dir (e.g. after a budget stop).
        overwrite: replace an earlier run in out_dir (without it, or resume, such a run is refused).
        overrides: any other key of params.yaml `llm.curtail`, dotted (e.g. {"budget.carbon_kg": 5}).
        data_dir: public datasets folder (MCI traces under energy/; generated traces without one).
    """
    from tasks.common.tracking import tracking_uri
    from tasks.llm.preflight import check_curtail

    ccfg, pcfg = curtail_configs(flow_overrides(overrides, policy=policy, threshold=threshold,
                                                target_site_steps=target_site_steps, **{"pretrain.resume": resume,
                                                                                       "pretrain.overwrite": overwrite}))
    data_dir = at_flow_start(lambda folder: check_curtail(ccfg, pcfg, folder), data_dir)
    with worker_runs_end_with_flow() as tags, remote_options(num_cpus=0):
        summary = curtail_task.submit(ccfg, pcfg, data_dir, tags, tracking_uri()).result()
    get_run_logger().info("llm_curtail done: %s", {k: summary.get(k) for k in (
        "kg_co2", "energy_kwh", "share_in_windows", "sim_hours", "val_bpb", "tokens", "budget_stop", "mlflow_run_id")})
    return summary
