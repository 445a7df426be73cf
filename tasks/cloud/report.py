"""Scores of the searches per method, the normalised-cost figure, outputs and MLflow runs."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.cloud.config import CloudConfig
from tasks.common.atomic import write_bytes, write_frame, write_json
from tasks.common.precision import hardware_tags


def curves(norm_cost: list[list[float | None]], penalised: list[list[float]]) -> dict[str, list]:
    """Per k, over the searches: the share that has found a feasible run, and the median and mean normalised
    cost over those (undefined before; None where none has); the penalty-filled mean over all, labelled."""
    norm = np.array(norm_cost, dtype=float)  # None -> NaN
    found = ~np.isnan(norm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a k at which no search has a feasible run yet
        median, mean = np.nanmedian(norm, axis=0), np.nanmean(norm, axis=0)
    return {"feasible_share_at": _rounded(found.mean(axis=0)), "median_norm_cost_at": _rounded(median),
            "mean_norm_cost_at": _rounded(mean), "penalised_mean_norm_cost_at": _rounded(np.mean(penalised, axis=0))}


def _rounded(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 4) for v in values]


def summarise(rows: list[dict]) -> dict[str, Any]:
    """Per method: the normalised-cost curves (`curves`), mean runs to within 10% of the optimum (max_runs + 1
    when never), share of profiling runs that met the constraint, summed search seconds; and Karasu against
    CherryPick where both ran."""
    everything = pd.DataFrame(rows)
    table = everything[everything["objective"] == "constrained"]
    methods = {}
    for method, group in table.groupby("method", sort=False):
        methods[method] = {
            **curves(group["norm_cost"].tolist(), group["norm_cost_penalised"].tolist()),
            "runs_to_within_10pct": round(float(group["runs_to_within_10pct"].mean()), 3),
            "runs_to_within_10pct_by_job": group.groupby("job")["runs_to_within_10pct"].mean().round(3).to_dict(),
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
        summary["karasu_vs_cherrypick"] = versus(methods["karasu"], methods["cherrypick"])
    return summary


def protocol(cfg: CloudConfig) -> dict[str, Any]:
    """What the collaborators shared: the study's protocol, or every run (an upper bound)."""
    return {"protocol": "upper bound (every run shared)" if cfg.shared_runs == "all" else "study",
            "shared_runs": cfg.shared_runs}


def versus(karasu: dict, cherrypick: dict) -> dict[str, Any]:
    """Median normalised cost at k = 3, 4, 5 (those within max_runs) of both and the margin (CherryPick's minus
    Karasu's, None where either is undefined), and the share of jobs on which Karasu needs fewer runs on
    average to get within 10% of the optimum. Summaries of two runs compare when their target seeds agree."""
    ks = [k for k in (3, 4, 5) if k <= len(karasu["median_norm_cost_at"])]
    ka, cp = ([stats["median_norm_cost_at"][k - 1] for k in ks] for stats in (karasu, cherrypick))
    jobs = sorted(set(karasu["runs_to_within_10pct_by_job"]) & set(cherrypick["runs_to_within_10pct_by_job"]))
    fewer = [karasu["runs_to_within_10pct_by_job"][j] < cherrypick["runs_to_within_10pct_by_job"][j] for j in jobs]
    return {"k": ks, "karasu_median": ka, "cherrypick_median": cp,
            "margin": [None if a is None or b is None else round(b - a, 4) for a, b in zip(ka, cp)],
            "workloads_fewer_runs_share": round(float(np.mean(fewer)), 3) if jobs else None, "workloads": len(jobs)}


def targets(study: dict[str, Any]) -> dict[str, bool]:
    """The bench's targets on the study's protocol."""
    return {"karasu_median_below_cherrypick_at_k_3_4_5": study["k"] == [3, 4, 5]
            and all(m is not None and m > 0 for m in study["margin"]),
            "karasu_fewer_runs_on_60pct_of_jobs": (study["workloads_fewer_runs_share"] or 0) >= 0.6}


BENCH_KEYS = ("feasible_share_at", "median_norm_cost_at", "mean_norm_cost_at", "penalised_mean_norm_cost_at",
              "runs_to_within_10pct", "feasible_rate", "wall_s")


def bench_figures(study: dict[str, Any], bound: dict[str, Any] | None) -> dict[str, Any]:
    """`seedflow bench cloud`'s figures from the flow's results: the study's protocol, its targets, and Karasu
    with every run shared (`bound`, an upper bound) against the same CherryPick searches (theirs do not depend
    on what collaborators share), with the margin under both."""
    out = {"source": study["source"], "protocol": study["protocol"], "shared_runs": study["shared_runs"],
           "methods": {m: {k: stats[k] for k in BENCH_KEYS} for m, stats in study["methods"].items()},
           **({"pareto": study["pareto"]} if "pareto" in study else {})}
    if "karasu_vs_cherrypick" in study:
        out["karasu_vs_cherrypick"] = study["karasu_vs_cherrypick"]
        out["targets"] = targets(study["karasu_vs_cherrypick"])
    if bound is not None:
        karasu = bound["methods"]["karasu"]
        out["upper_bound"] = {"protocol": bound["protocol"], "shared_runs": bound["shared_runs"],
                              "karasu": {k: karasu[k] for k in BENCH_KEYS}}
        if "karasu_vs_cherrypick" in study:
            bounded = versus(karasu, study["methods"]["cherrypick"])
            out["upper_bound"]["karasu_vs_cherrypick"] = bounded
            out["margin_by_shared_runs"] = {"k": bounded["k"], **{
                str(shared): {"median_margin": v["margin"], "workloads_fewer_runs_share": v["workloads_fewer_runs_share"]}
                for shared, v in ((study["shared_runs"], study["karasu_vs_cherrypick"]), (bound["shared_runs"], bounded))}}
    return out


def norm_cost_png(methods: dict[str, dict], title: str) -> bytes:
    """Left: median (solid) and mean (dashed) normalised cost over the searches that have a feasible run, and
    the penalty-filled mean (dotted); right: the share of searches that have one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cost, share) = plt.subplots(1, 2, figsize=(10, 3.8))
    for (method, stats), colour in zip(methods.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        ks = np.arange(1, len(stats["median_norm_cost_at"]) + 1)
        cost.plot(ks, np.array(stats["median_norm_cost_at"], dtype=float), marker="o", color=colour, label=method)
        cost.plot(ks, np.array(stats["mean_norm_cost_at"], dtype=float), ls="--", color=colour)  # None -> NaN: not drawn
        cost.plot(ks, stats["penalised_mean_norm_cost_at"], ls=":", color=colour)
        share.plot(ks, stats["feasible_share_at"], marker="o", color=colour, label=method)
    cost.axhline(1.1, color="grey", ls="-", lw=0.5)
    cost.set(title=f"{title}\nmedian (solid), mean (dashed) where feasible; penalty-filled mean (dotted)",
             xlabel="profiling runs", ylabel="best feasible cost / optimum")
    cost.title.set_fontsize(8)
    cost.legend(fontsize=7)
    share.set(title="searches with a feasible run", xlabel="profiling runs", ylabel="share", ylim=(0, 1.05))
    share.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_outputs(rows: list[dict], summary: dict, out_dir: Path, info: dict) -> None:
    table = pd.DataFrame(rows)
    lists = [c for c in ("norm_cost", "norm_cost_penalised", "hv_ratio", "picks") if c in table]
    flat = table.assign(**{c: table[c].map(lambda v: json.dumps(v) if isinstance(v, list) else None) for c in lists})
    write_frame(out_dir / "searches.csv", flat)
    curve = [{"method": m, "runs": k, "norm_cost": s["median_norm_cost_at"][k - 1], "mean": s["mean_norm_cost_at"][k - 1],
              "feasible_share": s["feasible_share_at"][k - 1], "penalised_mean": s["penalised_mean_norm_cost_at"][k - 1]}
             for m, s in summary["methods"].items() for k in range(1, len(s["median_norm_cost_at"]) + 1)]
    write_frame(out_dir / "plots" / "norm_cost.csv", pd.DataFrame(curve))
    write_bytes(out_dir / "plots" / "norm_cost.png", norm_cost_png(summary["methods"], info["title"]))
    write_json(out_dir / "metrics.json", {**info["protocol"], **summary, "hardware": info["hardware"]})


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
        for method, stats in summary["methods"].items():  # NaN where no search has a feasible run yet
            for key, name in (("median_norm_cost_at", "norm_cost"), ("mean_norm_cost_at", "norm_cost_mean"),
                              ("feasible_share_at", "feasible_share"), ("penalised_mean_norm_cost_at", "norm_cost_penalised")):
                for k, value in enumerate(stats[key], 1):
                    mlflow.log_metric(f"{method}.{name}", float("nan") if value is None else value, step=k)
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
                stats = curves(group["norm_cost"].tolist(), group["norm_cost_penalised"].tolist())
                for k, value in enumerate(stats["median_norm_cost_at"], 1):
                    mlflow.log_metric("norm_cost", float("nan") if value is None else value, step=k)
                for k, value in enumerate(stats["feasible_share_at"], 1):
                    mlflow.log_metric("feasible_share", value, step=k)
                mlflow.log_metrics({"runs_to_within_10pct": float(group["runs_to_within_10pct"].mean()),
                                    "feasible_rate": float(group["feasible_runs"].sum() / group["runs"].sum())})
        return parent.info.run_id
