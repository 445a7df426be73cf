"""The `seedflow` command: one sub-command per pipeline, plus `bench`, `demo`, `serve`.

Heavy imports (torch, ray, prefect, mlflow) happen inside the commands so `--help` is instant.
Each pipeline's commands live in `flows/<pipeline>_cli.py` and are registered here.
"""

from __future__ import annotations

import typer

from flows import forecast_cli, llm_cli, logs_cli

app = typer.Typer(help="seedflow: Prefect flows on Ray, tracked in MLflow, reproduced with DVC.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: each prints one JSON object as its last line.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

app.command("forecast")(forecast_cli.forecast)
bench_app.command("forecast")(forecast_cli.bench)
app.add_typer(llm_cli.app, name="llm")
bench_app.command("pretrain")(llm_cli.bench_pretrain)
bench_app.command("llm-study")(llm_cli.bench_study)
app.add_typer(logs_cli.app, name="logs")
bench_app.command("logs")(logs_cli.bench)

DEMOS = [forecast_cli.demo, llm_cli.demo, logs_cli.demo]


@app.callback()
def main() -> None:
    """Process-wide settings, applied before torch or scikit-learn load their OpenMP runtime."""
    import os

    # Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
    # made training and boosting up to 30x slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@app.command()
def demo(data_dir: str = typer.Option(None, help="Public datasets folder (default: SEEDFLOW_DATA or ../shared/datasets).")) -> None:
    """Run every pipeline end to end at small scale and print where the results are."""
    from tasks.common.prefect_api import prefect_api

    summaries = []
    with prefect_api():
        for run_demo in DEMOS:
            summaries.append(run_demo(data_dir))
    typer.echo("\nDemo finished. Results:")
    for line in summaries:
        typer.echo(f"  {line}")
    from tasks.common.tracking import tracking_uri

    typer.echo(f"  MLflow store: {tracking_uri()}  (browse: make mlflow-ui, then http://127.0.0.1:5000)")


@app.command()
def serve() -> None:
    """Serve every flow as a deployment so runs can be triggered from the Prefect UI.

    Needs a running server: `make prefect-server` and `export PREFECT_API_URL=http://127.0.0.1:4200/api`.
    """
    import os

    if not os.environ.get("PREFECT_API_URL"):
        raise typer.BadParameter("PREFECT_API_URL is not set; start a server with `make prefect-server` first")
    from flows.deployments import serve_all

    serve_all()


if __name__ == "__main__":
    app()
