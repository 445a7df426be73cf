"""Scores of the searches per method, the normalised-cost figure, outputs and MLflow runs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.cloud.config import CloudConfig
from tasks.common.atomic import write_bytes, write_frame, write_json
from tasks.common.precision import hardware_tags


def summarise(rows: list[dict]) -> dict[str, Any]:
    """Per method: mean normalised best cost at k = 1..max_runs, mean runs to within 10% of the optimum
    (max_runs + 1 when never), share of profiling runs that met the constraint, summed search seconds;
    and Karasu against CherryPick where both ran."""
    everything = pd.DataFrame(rows)
    table = everything[everything["objective"] == "constrained"]
    methods = {}
    for method, group in table.groupby("method", sort=False):
        methods[method] = {
            "norm_cost_at": np.round(np.mean(np.stack(group["norm_cost"].to_numpy()), axis=0), 4).tolist(),
            "runs_to_within_10pct": round(float(group["runs_to_within_10pct"].mean()), 3),
            "feasible_rate": round(float(group["feasible_runs"].sum() / group["runs"].sum()), 4),
            "wall_s": round(float(group["search_s"].sum()), 1),
            "searches": len(group),
        }
    summary: dict[str, Any] = {"methods": methods}
    pareto = everything[everything["objective"] == "pareto"]
    if len(pareto):
        summary["pareto"] = {method: {"hv_ratio_at": np.round(np.mean(np.stack(g["hv_ratio"].to_numpy()), axis=0), 4).tolist(),
                                      "wall_s": round(float(g["search_s"].sum()), 1), "searches": len(g)}
                             for method, g in pareto.groupby("method", sort=False)}
    if {"karasu", "cherrypick"} <= set(methods):
        per_job = table.pivot_table(index="job", columns="method", values="runs_to_within_10pct", aggfunc="mean")
        k3 = min(3, len(methods["karasu"]["norm_cost_at"])) - 1
        summary["karasu_vs_cherrypick"] = {
            "norm_cost_at_3": [methods["karasu"]["norm_cost_at"][k3], methods["cherrypick"]["norm_cost_at"][k3]],
            "workloads_fewer_runs_share": round(float((per_job["karasu"] < per_job["cherrypick"]).mean()), 3),
            "workloads": len(per_job),
        }
    return summary


def norm_cost_png(methods: dict[str, dict], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for method, stats in methods.items():
        ks = range(1, len(stats["norm_cost_at"]) + 1)
        ax.plot(ks, stats["norm_cost_at"], marker="o", label=method)
    ax.axhline(1.1, color="grey", ls=":", label="optimum + 10%")
    ax.set(title=title, xlabel="profiling runs", ylabel="best feasible cost / optimum")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_outputs(rows: list[dict], summary: dict, out_dir: Path, info: dict) -> None:
    table = pd.DataFrame(rows)
    curves = [c for c in ("norm_cost", "hv_ratio", "picks") if c in table]
    flat = table.assign(**{c: table[c].map(lambda v: json.dumps(v) if isinstance(v, list) else None) for c in curves})
    write_frame(out_dir / "searches.csv", flat)
    curve = [{"method": m, "runs": k, "norm_cost": v} for m, s in summary["methods"].items()
             for k, v in enumerate(s["norm_cost_at"], 1)]
    write_frame(out_dir / "plots" / "norm_cost.csv", pd.DataFrame(curve))
    write_bytes(out_dir / "plots" / "norm_cost.png", norm_cost_png(summary["methods"], info["title"]))
    write_json(out_dir / "metrics.json", {**summary, "hardware": info["hardware"]})


def log_to_mlflow(rows: list[dict], summary: dict, cfg: CloudConfig, out_dir: Path, run_name: str) -> str:
    """A parent run (per-method curves by step k, outputs, figure) and a child run per (job, method)."""
    import mlflow

    from tasks.common.tracking import use_experiment

    use_experiment(cfg.experiment)
    with mlflow.start_run(run_name=run_name, tags=hardware_tags()) as parent:
        mlflow.log_params({"jobs": len({r["job"] for r in rows}), "methods": ",".join(cfg.methods),
                           "percentiles": ",".join(map(str, cfg.percentiles)), "repetitions": cfg.repetitions,
                           "max_runs": cfg.max_runs, "noise_std": cfg.noise_std, "shared_runs": cfg.shared_runs,
                           "karasu.support": cfg.karasu.support, "karasu.support_k": cfg.karasu.support_k})
        mlflow.log_dict(cfg.model_dump(), "config.json")
        for method, stats in summary["methods"].items():
            for k, value in enumerate(stats["norm_cost_at"], 1):
                mlflow.log_metric(f"{method}.norm_cost", value, step=k)
            mlflow.log_metrics({f"{method}.runs_to_within_10pct": stats["runs_to_within_10pct"],
                                f"{method}.feasible_rate": stats["feasible_rate"]})
        for method, stats in summary.get("pareto", {}).items():
            for k, value in enumerate(stats["hv_ratio_at"], 1):
                mlflow.log_metric(f"pareto.{method}.hv_ratio", value, step=k)
        for path in ("searches.csv", "metrics.json"):
            mlflow.log_artifact(str(out_dir / path))
        mlflow.log_artifacts(str(out_dir / "plots"), "plots")
        table = pd.DataFrame(rows)
        table = table[table["objective"] == "constrained"]
        for (job, method), group in table.groupby(["job", "method"], sort=True):
            with mlflow.start_run(run_name=f"{job}-{method}", nested=True, tags={"job": job, "method": method}):
                for k, value in enumerate(np.mean(np.stack(group["norm_cost"].to_numpy()), axis=0), 1):
                    mlflow.log_metric("norm_cost", float(value), step=k)
                mlflow.log_metrics({"runs_to_within_10pct": float(group["runs_to_within_10pct"].mean()),
                                    "feasible_rate": float(group["feasible_runs"].sum() / group["runs"].sum())})
        return parent.info.run_id
