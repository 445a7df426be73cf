"""The `seedflow` command: one sub-command per pipeline, plus `bench`, `demo`, `serve`.

Heavy imports (torch, ray, prefect, mlflow) happen inside the commands so `--help` is instant.
Each pipeline's commands live in `flows/<pipeline>_cli.py` and are registered here. `run` is the
entry point: any error ends the command with one line on stderr (exit 2 for bad input, 1 for
anything else); `--debug` anywhere on the line, or SEEDFLOW_DEBUG=1, shows the traceback instead.
"""

from __future__ import annotations

import os
import sys

import typer

from flows import data_cli, forecast_cli, llm_cli, logs_cli

app = typer.Typer(help="seedflow: Prefect flows on Ray, tracked in MLflow, reproduced with DVC.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
bench_app = typer.Typer(help="Benchmarks: each prints one JSON object as its last line.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

app.command("forecast")(forecast_cli.forecast)
bench_app.command("forecast")(forecast_cli.bench)
app.add_typer(llm_cli.app, name="llm")
bench_app.command("pretrain")(llm_cli.bench_pretrain)
bench_app.command("llm-study")(llm_cli.bench_study)
app.add_typer(logs_cli.app, name="logs")
app.add_typer(data_cli.app, name="data")
bench_app.command("logs")(logs_cli.bench)

DEMOS = [forecast_cli.demo, llm_cli.demo, logs_cli.demo]


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks (also SEEDFLOW_DEBUG=1); allowed anywhere.")) -> None:
    """Process-wide settings, applied before torch or scikit-learn load their OpenMP runtime."""
    if debug:
        os.environ["SEEDFLOW_DEBUG"] = "1"
    # Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
    # made training and boosting up to 30x slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@app.command()
def demo(data_dir: str = typer.Option(None, help="Public datasets folder (default: SEEDFLOW_DATA or ../shared/datasets).")) -> None:
    """Run every pipeline end to end at small scale and print where the results are."""
    from tasks.common.prefect_api import prefect_api  # one server for every pipeline's flows

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
    if not os.environ.get("PREFECT_API_URL"):
        raise typer.BadParameter("PREFECT_API_URL is not set; start a server with `make prefect-server` first")
    from flows.deployments import serve_all

    serve_all()


def run() -> None:
    """The `seedflow` entry point: errors are one line unless debugging."""
    from tasks.common.errors import debug_enabled, exit_code, one_line

    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
        os.environ["SEEDFLOW_DEBUG"] = "1"
    if debug_enabled():
        app()
        return
    try:
        app(standalone_mode=False)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):  # usage errors keep click's own message
            exc.show()
            sys.exit(exc.exit_code)
        typer.echo(one_line(exc), err=True)
        sys.exit(exit_code(exc))


if __name__ == "__main__":
    run()
