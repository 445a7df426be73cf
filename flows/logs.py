"""The logs pipeline: Prefect flow `logs`, `seedflow logs run|parse`, `seedflow bench logs`, its demo.

check -> ingest -> parse -> weak labels -> detectors as Ray tasks -> evaluate.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import typer
from prefect import flow, get_run_logger, task
from prefect_ray.context import remote_options

from flows.options import DATA_DIR_OPTION, cli_overrides, comma_list, default, flow_overrides, set_option
from flows.runtime import RETRY_TRANSIENT, run_flow, task_runner
from tasks.common.config import load_config
from tasks.common.paths import project_root
from tasks.logs.config import LogsConfig
from tasks.logs.data import LogData, prepare, train_mask
from tasks.logs.evaluate import evaluate, histogram_png, pr_curve, pr_png, taxonomy
from tasks.logs.pipeline import (check_inputs, console_warning, detect, ingest_and_parse, label_gaps, read_parsed,
                                 weak_labels)
from tasks.logs.report import log_to_mlflow, precision_info, skipped_row, write_outputs

SECTION = "logs"


@task(name="ingest-and-parse", **RETRY_TRANSIENT)
def parse_step(name: str, cfg: LogsConfig, data_dir: str | None, reuse: bool) -> tuple[str, dict]:
    out_dir = project_root() / cfg.out_dir
    parquet, stats_file = out_dir / "parsed" / f"{name}.parquet", out_dir / "parsed" / f"{name}_stats.json"
    if reuse and parquet.is_file() and stats_file.is_file():
        stats = json.loads(stats_file.read_text())
        for warning in stats.get("warnings", []):  # said when it was parsed; say it again
            console_warning(warning)
        return str(parquet), stats
    path, stats = ingest_and_parse(cfg.dataset(name), cfg, data_dir, out_dir)
    return str(path), stats


@task(name="detect", **RETRY_TRANSIENT)
def detect_step(model: str, data: LogData, cfg: LogsConfig, labels: np.ndarray | None):
    return detect(model, data, cfg, labels)


@flow(name="logs", task_runner=task_runner(), log_prints=True)
def logs_flow(
    run: list[str] = default(SECTION, "run"),
    window_sizes: list[float] = default(SECTION, "window_sizes"),
    models: list[str] = default(SECTION, "models"),
    overrides: dict[str, Any] | None = None,
    data_dir: str | None = None,
    reuse_parsed: bool = False,
) -> dict[str, Any]:
    """Weakly labelled log anomaly detection: PULL and LogLAB against the baselines, logged to MLflow.

    Args:
        run: datasets to run, by name in params.yaml `logs.datasets` (e.g. spirit, bgl_2k).
        window_sizes: failure windows, +/- seconds around each anomaly (e.g. 0, 1, 2).
        models: detectors, e.g. pull, loglab, deeplog, pca, iforest, supervised.
        overrides: any other key of params.yaml `logs`, dotted (e.g. {"pull.epochs": 10}); wins over the fields above.
        data_dir: public datasets folder (default: SEEDFLOW_DATA, else ../shared/datasets).
        reuse_parsed: use the parsed Parquet that `seedflow logs parse` wrote instead of parsing again.
    """
    logger = get_run_logger()
    cfg = load_config(LogsConfig, SECTION, flow_overrides(overrides, run=run, window_sizes=window_sizes, models=models))
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


FLOWS = [logs_flow]
app = typer.Typer(help="Log anomaly detection: PULL, LogLAB and baselines on weakly labelled logs.", no_args_is_help=True)
SET_OPTION = set_option("pull.epochs=10")


def _overrides(assignments: list[str] | None, datasets: str | None, windows: str | None = None,
               models: str | None = None) -> dict:
    return cli_overrides(assignments, run=comma_list(datasets), window_sizes=comma_list(windows), models=comma_list(models))


def run_logs(overrides: dict, data_dir: str | None, reuse_parsed: bool = False) -> dict:
    """Check the config and every dataset here, then run the flow against a Prefect API."""
    check_inputs(load_config(LogsConfig, SECTION, overrides), data_dir)
    return run_flow("flows.logs:logs_flow", overrides=overrides, data_dir=data_dir, reuse_parsed=reuse_parsed)


@app.command("run")
def run(
    datasets: str = typer.Option(None, help="Comma-separated dataset names from params.yaml logs.datasets."),
    windows: str = typer.Option(None, help="Comma-separated failure-window sizes in seconds, e.g. 0,1,2."),
    models: str = typer.Option(None, help="Comma-separated models, e.g. pull,loglab,deeplog."),
    reuse_parsed: bool = typer.Option(False, help="Use results/.../parsed/<name>.parquet from `seedflow logs parse`."),
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Ingest, parse, weak-label, train every detector (Prefect flow `logs` on Ray) and evaluate."""
    result = run_logs(_overrides(set_, datasets, windows, models), data_dir, reuse_parsed)
    typer.echo(json.dumps({"results": result["results"], "best": result["best"], "mlflow_run_id": result["mlflow_run_id"]}, indent=2))


@app.command("parse")
def parse(
    datasets: str = typer.Option(None, help="Comma-separated dataset names (default: logs.run)."),
    resume_state: bool = typer.Option(False, help="Continue from the persisted drain3 state instead of starting fresh."),
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Load and template-mine the datasets; write parsed Parquet, drain3 state and stats."""
    cfg = load_config(LogsConfig, SECTION, _overrides(set_, datasets))
    check_inputs(cfg, data_dir)
    out = {}
    for name in cfg.run:
        path, stats = ingest_and_parse(cfg.dataset(name), cfg, data_dir, project_root() / cfg.out_dir, resume_state)
        out[name] = {"parquet": str(path), **stats}
    typer.echo(json.dumps(out, indent=2))


def bench(
    datasets: str = typer.Option("spirit", help="Datasets to run (default: the 300k Spirit lines)."),
    windows: str = typer.Option(None, help="Failure-window sizes in seconds (default: params.yaml)."),
    models: str = typer.Option(None, help="Models (default: all)."),
    repeats: int = typer.Option(3, help="Parsing: best of this many interleaved runs of each parser."),
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Whole pipeline on Spirit, plus parsing: the fast path vs drain3 with the same masks and vs default
    drain3 (lines/s, speedup, grouping accuracy, incl. BGL_2k against loghub); last line = one JSON object."""
    from tasks.logs.pipeline import parsing_benchmark

    overrides = _overrides(set_, datasets, windows, models)
    overrides.setdefault("out_dir", "results/bench/logs")
    start = time.perf_counter()
    result = run_logs(overrides, data_dir)
    wall = time.perf_counter() - start

    parsing = parsing_benchmark(load_config(LogsConfig, SECTION, overrides), data_dir, repeats)
    results = [{k: r.get(k) for k in ("dataset", "window_s", "window_share", "model", "precision", "recall", "f1",
                                      "train_s", "lines_per_s_score", "note")}
               | {"lines_per_s_parse": result["parse"][r["dataset"]]["lines_per_s"]} for r in result["rows"]]
    print(json.dumps({"results": results, "parsing": parsing, "best": result["best"], "pipeline_wall_s": round(wall, 1),
                      **result["info"]}))


BENCHES = {"logs": bench}


def demo(data_dir: str | None) -> str:
    """Small logs run with the `demo.logs` overrides from params.yaml (generated logs when offline)."""
    from tasks.common.config import read_params
    from tasks.common.paths import data_dir as resolve_data_dir
    from tasks.common.paths import seeds_dir
    from tasks.logs.synthetic import write_synthetic_logs

    overrides = dict(read_params().get("demo", {}).get("logs", {}))
    if resolve_data_dir(data_dir) is None:
        path = write_synthetic_logs(seeds_dir() / "logs" / "synthetic.csv")
        overrides.update(datasets=[{"name": "synthetic", "format": "generic", "path": str(path)}], run=["synthetic"])
    result = run_logs(overrides, data_dir)
    return f"logs: {headline(result['rows'])}; table {result['results']} (MLflow experiment 'logs', run {result['mlflow_run_id']})"


def headline(rows: list[dict]) -> str:
    """The platform's own methods first, then the best baseline and the supervised upper bound."""
    def f1(model: str) -> str:
        scores = [r["f1"] for r in rows if r["model"] == model and r.get("f1") is not None]
        return f"{max(scores):.3f}" if scores else "n/a"

    ours = ("pull", "loglab")
    baselines = {r["model"] for r in rows if r["model"] not in (*ours, "supervised") and r.get("f1") is not None}
    best = max(baselines, key=lambda m: float(f1(m)), default=None)
    where = ", ".join(sorted({f"{r['dataset']} +/-{r['window_s']:g}s" for r in rows}))
    return (f"{where}: PULL F1 {f1('pull')}, LogLAB F1 {f1('loglab')}"
            + (f"; best baseline {best} {f1(best)}" if best else "") + f"; supervised upper bound {f1('supervised')}")
