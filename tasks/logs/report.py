"""Results table, metrics JSON, plots, and one MLflow run per (dataset, window, model).

Every output carries the hardware and the PULL precision actually used (`auto` resolves per
machine), so figures from different machines are never compared blind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.common.atomic import write_bytes, write_frame, write_json
from tasks.common.precision import hardware_tags, resolve_precision
from tasks.logs.config import LogsConfig

FLAT_KEYS = ["dataset", "window_s", "model", "precision", "recall", "f1", "train_s", "score_s", "lines_per_s_score",
             "recall_template", "recall_attribute", "recall_contextual", "threshold", "note"]


def precision_info(cfg: LogsConfig) -> dict[str, Any]:
    """The PULL/LogLAB precision asked for and used here, and the hardware that decided it."""
    return {"pull_precision": {"requested": cfg.pull.precision, "used": resolve_precision(cfg.pull.precision, "cpu")},
            "hardware": hardware_tags()}


def skipped_row(window: dict, model: str, note: str) -> dict:
    """A results row for a model that was not trained, saying why."""
    return {**window, "model": model, "precision": None, "recall": None, "f1": None, "note": note, "info": {}}


def write_outputs(rows: list[dict], parse_stats: dict[str, dict], plots: dict[str, bytes], out_dir: Path,
                  info: dict[str, Any]) -> dict[str, Any]:
    table = pd.DataFrame([{k: r.get(k) for k in FLAT_KEYS} for r in rows])
    table = table.sort_values(["dataset", "window_s", "f1"], ascending=[True, True, False]).reset_index(drop=True)
    write_frame(out_dir / "results.csv", table)
    rated = table.dropna(subset=["f1"])
    best = rated.loc[rated.groupby(["dataset", "window_s"])["f1"].idxmax(), ["dataset", "window_s", "model", "f1"]]
    metrics = {
        "f1": {f"{r.dataset}/w{r.window_s:g}/{r.model}": r.f1 for r in rated.itertuples()},
        "best": best.to_dict(orient="records"),
        "not_rated": {f"{r.dataset}/w{r.window_s:g}/{r.model}": r.note for r in table[table["f1"].isna()].itertuples()},
        "parse": parse_stats,
        **info,
    }
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "details.json", rows)
    for name, png in plots.items():
        write_bytes(out_dir / "plots" / name, png)
    f1_plot = table[["dataset", "window_s", "model", "f1"]].assign(run=lambda t: t.dataset + "/w" + t.window_s.map("{:g}".format))
    write_frame(out_dir / "plots" / "f1.csv", f1_plot[["run", "model", "f1"]])
    return {"table": table, "metrics": metrics}


def log_to_mlflow(rows: list[dict], parse_stats: dict, cfg: LogsConfig, out_dir: Path, run_name: str,
                  info: dict[str, Any]) -> str:
    """A parent run and a child run per (dataset, window, model), each with its fitted detector as an
    MLflow model; the best detector of each dataset is registered as `seedflow-logs-<dataset>`."""
    import mlflow

    from tasks.common.tracking import use_experiment
    from tasks.logs.model_registry import log_detector, register_best

    use_experiment(cfg.experiment)
    with mlflow.start_run(run_name=run_name) as parent:
        mlflow.set_tags(info["hardware"])
        mlflow.log_params({"datasets": ",".join(cfg.run), "window_sizes": ",".join(f"{w:g}" for w in cfg.window_sizes),
                           "models": ",".join(cfg.models), "train_fraction": cfg.train_fraction, "seed": cfg.seed,
                           "pull.precision": info["pull_precision"]["requested"],
                           "pull.precision_used": info["pull_precision"]["used"]})
        mlflow.log_dict(cfg.model_dump(), "config.json")
        for name, stats in parse_stats.items():
            mlflow.log_metrics({f"{name}.parse_lines_per_s": stats["lines_per_s"], f"{name}.malformed": stats["malformed"],
                                f"{name}.templates": stats["templates"]})
        for path in ("results.csv", "metrics.json"):
            mlflow.log_artifact(str(out_dir / path))
        if (out_dir / "plots").is_dir():
            mlflow.log_artifacts(str(out_dir / "plots"), "plots")
        logged = []
        for row in rows:
            with mlflow.start_run(run_name=f"{row['dataset']}-w{row['window_s']:g}-{row['model']}", nested=True) as child:
                mlflow.set_tags({**info["hardware"], **({"note": row["note"]} if row.get("note") else {})})
                mlflow.log_params({"dataset": row["dataset"], "window_s": row["window_s"], "model": row["model"],
                                   **({"compute_precision": row["info"]["precision"]} if "precision" in row["info"] else {})})
                metrics = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}
                mlflow.log_metrics({k: v for k, v in metrics.items() if k not in ("window_s",)})
                mlflow.log_dict(json.loads(json.dumps(row, default=str)), "result.json")
                hist = out_dir / "plots" / f"{row['dataset']}_w{row['window_s']:g}_{row['model']}_hist.png"
                if hist.is_file():
                    mlflow.log_artifact(str(hist), "plots")
                if Path(row["info"].get("model_file", "")).is_file():
                    tags = {"dataset": row["dataset"], "window_s": f"{row['window_s']:g}", "model": row["model"]}
                    logged.append((tags, row.get("f1"), log_detector(child.info.run_id, row["info"]["model_file"], tags)))
        registered = register_best(logged)
        if registered:
            mlflow.log_dict(registered, "registered_models.json")
        return parent.info.run_id
