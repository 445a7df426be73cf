"""A curtailment-aware training run, end to end: plan the rounds from the traces, account energy and
emissions, stop at the budget, train through the hub on exactly that plan, and record it all.

The plan is computed before training (the policies read only the traces, never the model), so
energy, emissions and the budget cut are known per round; the hub (tasks/llm/sites/hub.py) then trains
round by round with the sites the plan names, each for its planned steps, syncing where it says.
A budget stop ends the run after the last round that fits, with a checkpoint there: a resume with
a larger budget re-plans the same rounds and goes on from it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from tasks.common.atomic import write_json, write_text
from tasks.common.errors import InputError
from tasks.common.progress import Progress
from tasks.llm.config import PretrainConfig
from tasks.llm.curtail.config import CurtailConfig
from tasks.llm.curtail.energy import (
    Accounting,
    Cutoff,
    account,
    budget_cutoff,
    measured_cpu_energy,
)
from tasks.llm.curtail.schedule import Round, Schedule, centralised, plan, two_sites
from tasks.llm.curtail.timeline import plot_bpb_vs_carbon, plot_timeline
from tasks.llm.train.run_folder import progress_log

VARIANTS = ("curtailed", "centralised", "two_sites")


@dataclass
class Prepared:
    """A run's plan before any training: its rounds (cut at the budget), their energy and emissions."""

    schedule: Schedule
    accounting: Accounting
    cutoff: Cutoff
    rounds: list[Round]


def prepare(ccfg: CurtailConfig, traces: dict[str, pd.Series], variant: str = "curtailed",
            policy: str | None = None, region: str | None = None) -> Prepared:
    """The plan of `variant`: curtailed (every site, `policy`), centralised (one `region` non-stop) or two_sites."""
    target = ccfg.target_site_steps
    if variant == "centralised":
        schedule = centralised(traces, ccfg, target, site=region)
    elif variant == "two_sites":
        schedule = two_sites(traces, ccfg, target, policy=policy)
    elif variant == "curtailed":
        schedule = plan(traces, ccfg, target, policy=policy)
    else:
        raise InputError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    accounting = account(schedule, traces, ccfg)
    cutoff = budget_cutoff(schedule, accounting, ccfg.budget)
    if cutoff.last_round < 0:
        first = accounting.per_round().iloc[0]
        raise InputError(f"llm.curtail.budget {ccfg.budget.model_dump()} does not cover the first round "
                         f"({first['energy_kwh']:.3g} kWh, {first['kg_co2']:.3g} kg CO2); raise the budget")
    return Prepared(schedule, accounting, cutoff, schedule.rounds[: cutoff.last_round + 1])


def training_config(pcfg: PretrainConfig, prepared: Prepared) -> PretrainConfig:
    """The stage config of a plan: DiLoCo over the plan's sites, as many steps as its rounds' longest site."""
    steps = sum(max(r.steps.values(), default=0) for r in prepared.rounds)
    sites = [{"name": name} for name in prepared.schedule.timelines]
    return PretrainConfig.model_validate({**pcfg.model_dump(), "mode": "diloco", "sites": sites, "steps": steps})


def run_curtail(ccfg: CurtailConfig, pcfg: PretrainConfig, source, traces: dict[str, pd.Series], out_dir: str | Path,
                variant: str = "curtailed", policy: str | None = None, region: str | None = None,
                tags: dict[str, str] | None = None, stage: str = "curtail") -> dict:
    """Plan, train and record one run; returns the trainer's summary with the energy figures added."""
    from tasks.llm.train.run import run_training

    prepared = prepare(ccfg, traces, variant, policy, region)
    cfg = training_config(pcfg, prepared)
    schedule = round_plans(prepared.rounds)
    label = prepared.schedule.policy if variant == "curtailed" else variant
    run_tags = {**(tags or {}), "curtail_variant": variant, "curtail_policy": prepared.schedule.policy,
                **({"curtail_region": region} if region else {})}
    out = Path(out_dir)
    say = Progress(1, stage, log_file=progress_log(out)).say
    say(plan_line(ccfg, prepared, cfg.steps, stage))
    if prepared.cutoff.limited:
        c = prepared.cutoff
        say(f"[{stage}] budget {ccfg.budget.model_dump(exclude_none=True)}: the run stops after round {c.last_round} of "
            f"{len(prepared.schedule.rounds)} ({c.site_steps} of {ccfg.target_site_steps} site-steps, "
            f"{c.energy_kwh:.3g} kWh, {c.carbon_kg:.3g} kg CO2); its checkpoint there resumes with a larger budget")
    with measured_cpu_energy() as measured:
        summary = run_training(cfg, source, out_dir=out, stage=stage, tags=run_tags, schedule=schedule)
    summary.update(energy_figures(ccfg, prepared), variant=label, measured_cpu_joules=measured.joules)
    summary["bpb_vs_carbon"] = bpb_vs_carbon(prepared, summary["evals"])
    _record(ccfg, prepared, schedule, traces, summary, out)
    return summary


def plan_line(ccfg: CurtailConfig, prepared: Prepared, steps: int, stage: str = "curtail") -> str:
    """What was asked against what is scheduled: the progress lines count model steps (a round takes as many
    as its busiest site), fewer than the site-steps asked when sites train side by side."""
    scheduled = sum(r.site_steps for r in prepared.rounds)
    return (f"[{stage}] {ccfg.target_site_steps} site-steps asked, {scheduled} scheduled in {len(prepared.rounds)} "
            f"rounds over {len(prepared.schedule.timelines)} sites: {steps} model steps (the step counts below)")


def round_plans(rounds: list[Round]):
    """The hub's plan: a lone site trains locally, and syncs when its stretch alone ends (another site joins,
    or a pause or another site follows), so whoever trains next starts from the newest parameters."""
    from tasks.llm.sites.hub import RoundPlan

    plans = []
    for k, r in enumerate(rounds):
        following = rounds[k + 1].steps if k + 1 < len(rounds) else {}
        alone_ends = len(r.steps) == 1 and set(following) != set(r.steps)
        plans.append(RoundPlan(dict(r.steps), r.sync or alone_ends))
    return plans


def energy_figures(ccfg: CurtailConfig, prepared: Prepared) -> dict:
    """kg CO2, energy, idle-provisioned energy, share inside windows and simulated hours of the rounds run."""
    rows = prepared.accounting.rows
    rows = rows[rows["round"] <= prepared.cutoff.last_round]
    idle_kw = {s.name: ccfg.power.idle_kw * s.gpus / ccfg.power.per_gpus for s in ccfg.sites}
    energy = float(rows["energy_kwh"].sum())
    first, last = prepared.rounds[0], prepared.rounds[-1]
    return {"kg_co2": float(rows["kg_co2"].sum()), "energy_kwh": energy,
            "idle_kwh": float(sum(row.idle_s * idle_kw[row.site] for row in rows.itertuples()) / 3600),
            "share_in_windows": float(rows["window_kwh"].sum()) / energy if energy else float("nan"),
            "sim_hours": (last.end_s - first.start_s) / 3600, "site_steps": sum(r.site_steps for r in prepared.rounds),
            "budget_stop": prepared.cutoff.limited,
            "per_site_kg_co2": {str(k): float(v) for k, v in rows.groupby("site")["kg_co2"].sum().items()}}


def bpb_vs_carbon(prepared: Prepared, evals: list[dict]) -> list[tuple[float, float]]:
    """(cumulative kg CO2 at the round an evaluation followed, val bpb) per evaluation."""
    carbon = prepared.accounting.per_round()["kg_co2"].cumsum().to_numpy()
    ends, step = [], 0
    for r in prepared.rounds:
        step += max(r.steps.values(), default=0)
        ends.append(step)
    points = []
    for e in evals:
        r = next((i for i, end in enumerate(ends) if end >= e["step"]), len(ends) - 1)
        points.append((float(carbon[r]), float(e["val_bpb"])))
    return points


def loss_curve(prepared: Prepared, history: list[float], step_s: float) -> list[tuple[float, float]]:
    """The run's loss per step against simulated time (a round's steps follow its start)."""
    times = [r.start_s + (i + 1) * step_s for r in prepared.rounds for i in range(max(r.steps.values(), default=0))]
    return list(zip(times, history))


def _record(ccfg: CurtailConfig, prepared: Prepared, plans: list, traces: dict, summary: dict, out: Path) -> None:
    """schedule.json, energy.csv, timeline.png and bpb_vs_carbon.png in the run folder and its MLflow run."""
    write_json(out / "schedule.json", {**prepared.schedule.to_dict(), "cutoff": prepared.cutoff.to_dict()})
    write_text(out / "energy.csv", prepared.accounting.rows.to_csv(index=False))
    synced = [replace(r, sync=plan.sync) for r, plan in zip(prepared.rounds, plans)]  # where the hub synced
    plot_timeline(out / "timeline.png", Schedule(synced, prepared.schedule.timelines, ccfg.step_s,
                                                 prepared.schedule.policy), traces, ccfg,
                  loss=loss_curve(prepared, summary["history"], ccfg.step_s))
    plot_bpb_vs_carbon(out / "bpb_vs_carbon.png", {summary["variant"]: summary["bpb_vs_carbon"]})
    figures = {k: summary[k] for k in ("kg_co2", "energy_kwh", "idle_kwh", "share_in_windows", "sim_hours",
                                       "site_steps", "budget_stop", "measured_cpu_joules", "per_site_kg_co2")}
    write_json(out / "curtail.json", figures)
    run_id = summary.get("mlflow_run_id")
    if not run_id:
        return
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client, now = MlflowClient(), int(time.time() * 1000)
    metrics = [Metric(k, float(summary[k]), now, 0) for k in ("kg_co2", "energy_kwh", "idle_kwh", "share_in_windows",
                                                             "sim_hours", "site_steps")]
    metrics += [Metric("cumulative_kg_co2_at_eval", kg, now, i) for i, (kg, _) in enumerate(summary["bpb_vs_carbon"])]
    metrics += [Metric("val_bpb_at_eval", bpb, now, i) for i, (_, bpb) in enumerate(summary["bpb_vs_carbon"])]
    if summary["measured_cpu_joules"] is not None:
        metrics.append(Metric("measured_cpu_joules", summary["measured_cpu_joules"], now, 0))
    client.log_batch(run_id, metrics=metrics)
    client.set_tag(run_id, "budget", json.dumps({**ccfg.budget.model_dump(), "used_kwh": prepared.cutoff.energy_kwh,
                                                 "used_kg_co2": prepared.cutoff.carbon_kg,
                                                 "stopped": prepared.cutoff.limited}))
    for name in ("timeline.png", "bpb_vs_carbon.png", "schedule.json", "energy.csv", "curtail.json"):
        client.log_artifact(run_id, str(out / name))
