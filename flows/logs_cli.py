"""`seedflow logs run|parse`, `seedflow bench logs` and the logs part of `seedflow demo`."""

from __future__ import annotations

import json
import time

import typer

from tasks.common.cli_options import DATA_DIR_OPTION, SET_OPTION, cli_overrides, comma_list

app = typer.Typer(help="Log anomaly detection: PULL, LogLAB and baselines on weakly labelled logs.", no_args_is_help=True)


def _overrides(assignments: list[str] | None, datasets: str | None, windows: str | None = None,
               models: str | None = None) -> dict:
    return cli_overrides(assignments, run=comma_list(datasets), window_sizes=comma_list(windows), models=comma_list(models))


def run_logs(overrides: dict, data_dir: str | None, reuse_parsed: bool = False) -> dict:
    from tasks.common.prefect_api import prefect_api

    with prefect_api():
        from flows.logs import logs_flow

        return logs_flow(overrides=overrides, data_dir=data_dir, reuse_parsed=reuse_parsed)


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
    from tasks.common.config import load_config
    from tasks.common.paths import project_root
    from tasks.logs.config import LogsConfig
    from tasks.logs.pipeline import ingest_and_parse

    cfg = load_config(LogsConfig, "logs", _overrides(set_, datasets))
    out = {}
    for name in cfg.run:
        path, stats = ingest_and_parse(cfg.dataset(name), cfg, data_dir, project_root() / cfg.out_dir, resume_state)
        out[name] = {"parquet": str(path), **stats}
    typer.echo(json.dumps(out, indent=2))


def bench(
    datasets: str = typer.Option("spirit", help="Datasets to run (default: the 300k Spirit lines)."),
    windows: str = typer.Option(None, help="Failure-window sizes in seconds (default: params.yaml)."),
    models: str = typer.Option(None, help="Models (default: all)."),
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Whole pipeline on Spirit plus fast-path vs plain drain3 parsing; last line = one JSON object."""
    from tasks.common.config import load_config
    from tasks.logs.config import LogsConfig
    from tasks.logs.loaders import load
    from tasks.logs.parsing import grouping_accuracy, parse, plain_drain
    from tasks.logs.pipeline import resolve

    overrides = _overrides(set_, datasets, windows, models)
    overrides.setdefault("out_dir", "results/bench/logs")
    start = time.perf_counter()
    result = run_logs(overrides, data_dir)
    wall = time.perf_counter() - start

    cfg = load_config(LogsConfig, "logs", overrides)
    parsing = {}
    for name in cfg.run:
        spec = cfg.dataset(name)
        frame = load(spec.format, resolve(spec.path, data_dir), resolve(spec.labels, data_dir), spec.max_lines).frame
        fast, stats = parse(frame, cfg.parse)
        plain_ids, plain_s = plain_drain(frame["content"], cfg.parse)
        parsing[name] = {"lines": len(frame), "fast_lines_per_s": stats["lines_per_s"],
                         "plain_drain3_lines_per_s": round(len(frame) / plain_s, 1),
                         "speedup": round(stats["lines_per_s"] * plain_s / len(frame), 2),
                         "agreement_with_plain_drain3": round(grouping_accuracy(plain_ids, fast["template_id"]), 4)}
    structured = resolve("logs/BGL_2k.log_structured.csv", data_dir)
    if structured.is_file():  # the standard grouping-accuracy check of the template miner
        import pandas as pd

        bgl, _ = parse(load("bgl", structured.with_name("BGL_2k.log")).frame, cfg.parse)
        parsing["bgl_2k_grouping_accuracy"] = round(grouping_accuracy(pd.read_csv(structured)["EventId"], bgl["template_id"]), 4)
    results = [{k: r[k] for k in ("dataset", "window_s", "window_share", "model", "precision", "recall", "f1",
                                  "train_s", "lines_per_s_score")} | {"lines_per_s_parse": result["parse"][r["dataset"]]["lines_per_s"]}
               for r in result["rows"]]
    print(json.dumps({"results": results, "parsing": parsing, "best": result["best"], "pipeline_wall_s": round(wall, 1)}))


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
    best = ", ".join(f"{b['dataset']}/w{b['window_s']:g}: {b['model']} F1 {b['f1']:.3f}" for b in result["best"])
    return f"logs: {best}; table {result['results']} (MLflow experiment 'logs', run {result['mlflow_run_id']})"
