"""`seedflow logs run|parse`, `seedflow bench logs` and the logs part of `seedflow demo`."""

from __future__ import annotations

import json
import time

import typer

from flows.runner import run_flow
from tasks.common.cli_options import DATA_DIR_OPTION, SET_OPTION, cli_overrides, comma_list

app = typer.Typer(help="Log anomaly detection: PULL, LogLAB and baselines on weakly labelled logs.", no_args_is_help=True)


def _overrides(assignments: list[str] | None, datasets: str | None, windows: str | None = None,
               models: str | None = None) -> dict:
    return cli_overrides(assignments, run=comma_list(datasets), window_sizes=comma_list(windows), models=comma_list(models))


def run_logs(overrides: dict, data_dir: str | None, reuse_parsed: bool = False) -> dict:
    from tasks.common.config import load_config
    from tasks.logs.config import LogsConfig
    from tasks.logs.pipeline import check_inputs

    check_inputs(load_config(LogsConfig, "logs", overrides), data_dir)
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
    from tasks.common.config import load_config
    from tasks.common.paths import project_root
    from tasks.logs.config import LogsConfig
    from tasks.logs.pipeline import check_inputs, ingest_and_parse

    cfg = load_config(LogsConfig, "logs", _overrides(set_, datasets))
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
    from tasks.common.config import load_config
    from tasks.logs.config import LogsConfig
    from tasks.logs.pipeline import parsing_benchmark

    overrides = _overrides(set_, datasets, windows, models)
    overrides.setdefault("out_dir", "results/bench/logs")
    start = time.perf_counter()
    result = run_logs(overrides, data_dir)
    wall = time.perf_counter() - start

    parsing = parsing_benchmark(load_config(LogsConfig, "logs", overrides), data_dir, repeats)
    results = [{k: r.get(k) for k in ("dataset", "window_s", "window_share", "model", "precision", "recall", "f1",
                                      "train_s", "lines_per_s_score", "note")}
               | {"lines_per_s_parse": result["parse"][r["dataset"]]["lines_per_s"]} for r in result["rows"]]
    print(json.dumps({"results": results, "parsing": parsing, "best": result["best"], "pipeline_wall_s": round(wall, 1),
                      **result["info"]}))


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
