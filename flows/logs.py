"""Prefect flow `logs`: check -> ingest -> parse -> weak labels -> detectors as Ray tasks -> evaluate."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect_ray.context import remote_options

from tasks.common.config import load_config
from tasks.common.paths import project_root
from tasks.common.ray_runtime import task_runner
from tasks.logs.config import LogsConfig
from tasks.logs.data import LogData, prepare, train_mask
from tasks.logs.evaluate import evaluate, histogram_png, pr_curve, pr_png, taxonomy
from tasks.logs.pipeline import (check_inputs, console_warning, detect, ingest_and_parse, label_gaps, read_parsed,
                                 weak_labels)
from tasks.logs.report import log_to_mlflow, precision_info, skipped_row, write_outputs


@task(name="ingest-and-parse")
def parse_step(name: str, cfg: LogsConfig, data_dir: str | None, reuse: bool) -> tuple[str, dict]:
    import json

    out_dir = project_root() / cfg.out_dir
    parquet, stats_file = out_dir / "parsed" / f"{name}.parquet", out_dir / "parsed" / f"{name}_stats.json"
    if reuse and parquet.is_file() and stats_file.is_file():
        stats = json.loads(stats_file.read_text())
        for warning in stats.get("warnings", []):  # said when it was parsed; say it again
            console_warning(warning)
        return str(parquet), stats
    path, stats = ingest_and_parse(cfg.dataset(name), cfg, data_dir, out_dir)
    return str(path), stats


@task(name="detect")
def detect_step(model: str, data: LogData, cfg: LogsConfig, labels: np.ndarray | None):
    return detect(model, data, cfg, labels)


@flow(name="logs", task_runner=task_runner(), log_prints=True)
def logs_flow(overrides: dict[str, Any] | None = None, data_dir: str | None = None, reuse_parsed: bool = False) -> dict[str, Any]:
    """Train and compare PULL, LogLAB and baselines; `overrides` are dotted params.yaml keys under `logs`."""
    logger = get_run_logger()
    cfg = load_config(LogsConfig, "logs", overrides)
    check_inputs(cfg, data_dir)  # the CLI's refusals, also for runs started from the Prefect UI
    out_dir = project_root() / cfg.out_dir
    rows, plots, parse_stats = [], {}, {}
    for name in cfg.run:
        path, stats = parse_step(name, cfg, data_dir, reuse_parsed)
        parse_stats[name] = stats
        logger.info("%s: %d lines (%d malformed), %d templates, %.0f lines/s", name, stats["lines"],
                    stats["malformed"], stats["templates"], stats["lines_per_s"])
        parsed = read_parsed(path)
        labels = parsed["label"].fillna(0).to_numpy(np.int64)
        gaps = label_gaps(labels, train_mask(len(parsed), cfg.train_fraction))
        stats["label_gaps"] = gaps
        for gap in gaps.values():
            logger.warning("%s: %s", name, gap)
        models = [m for m in cfg.models if m not in gaps]
        types = taxonomy(parsed["template_id"].to_numpy(), parsed["content"].to_numpy(), labels)
        for w in cfg.window_sizes:
            weak = weak_labels(parsed, cfg.dataset(name), w, data_dir)
            data = prepare(parsed.drop(columns=["label"]), weak, cfg.train_fraction)
            window = {"dataset": name, "window_s": w, "window_share": round(float(weak.mean()), 4)}
            rows += [skipped_row(window, m, gaps[m]) for m in cfg.models if m in gaps]
            with remote_options(num_cpus=1):
                futures = [(m, detect_step.submit(m, data, cfg, labels if m == "supervised" else None)) for m in models]
            curves = {}
            for model, future in futures:
                det = future.result()
                row = {**window, **evaluate(det, labels, data.train, types, gaps.get("metrics")), "info": det.info}
                rows.append(row)
                plots[f"{name}_w{w:g}_{model}_hist.png"] = histogram_png(det, labels, ~data.train)
                if "metrics" not in gaps:
                    curves[model] = pr_curve(det, labels, ~data.train)
                logger.info("%s w=%g %s: P %s R %s F1 %s (train %.1fs)", name, w, model,
                            *(f"{v:.4f}" if v is not None else "n/a" for v in (row["precision"], row["recall"], row["f1"])),
                            row["train_s"])
            if curves:
                plots[f"{name}_w{w:g}_pr.png"] = pr_png(curves, f"{name}, failure windows +/-{w:g}s (test part)")
    info = precision_info(cfg)
    result = write_outputs(rows, parse_stats, plots, out_dir, info)
    run_id = log_to_mlflow(rows, parse_stats, cfg, out_dir, run_name=f"logs-{'-'.join(cfg.run)}", info=info)
    logger.info("results: %s, MLflow run %s", out_dir / "results.csv", run_id)
    return {"rows": rows, "parse": parse_stats, "results": str(out_dir / "results.csv"), "mlflow_run_id": run_id,
            "best": result["metrics"]["best"], "info": info}
