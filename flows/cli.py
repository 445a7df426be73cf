"""The `seedflow` command: a sub-command per registered pipeline, plus `bench`, `demo`, `serve`.

`run` is the entry point: the app is built from flows/registry.py inside it, so that any error,
a broken params.yaml included, ends the command with one line on stderr (exit 2 for bad input,
1 for anything else); `--debug` anywhere on the line, or SEEDFLOW_DEBUG=1, shows the traceback.
"""

from __future__ import annotations

import os
import sys

import typer
from typer.exceptions import TyperException

DEMO_DATA_DIR = typer.Option(None, help="Public datasets folder (default: SEEDFLOW_DATA or ../shared/datasets).")


def build_app(names: list[str] | None = None) -> typer.Typer:
    """The root command with the sub-app, benchmarks and demo of every pipeline in the registry."""
    from flows.runtime import apply_prefect_env

    apply_prefect_env()  # before any pipeline module imports Prefect: it reads its settings then
    from flows.registry import pipelines

    modules = pipelines(names)
    app = typer.Typer(help="seedflow: Prefect flows on Ray, tracked in MLflow, reproduced with DVC.",
                      no_args_is_help=True, pretty_exceptions_enable=False,
                      rich_markup_mode=None)  # help texts are plain: `[bracketed]` words are shown, not parsed
    bench_app = typer.Typer(help="Benchmarks: each prints one JSON object as its last line.", no_args_is_help=True)
    app.add_typer(bench_app, name="bench")
    for name, module in modules.items():
        app.add_typer(module.app, name=name)
        for bench_name, bench in getattr(module, "BENCHES", {}).items():
            bench_app.command(bench_name)(bench)
    demos = [module.demo for module in modules.values() if hasattr(module, "demo")]

    @app.command("demo")
    def demo(data_dir: str = DEMO_DATA_DIR) -> None:
        """Run every pipeline end to end at small scale and print where the results are."""
        run_demos(demos, data_dir)

    app.callback()(main)
    app.command()(serve)
    return app


def main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks (also SEEDFLOW_DEBUG=1); allowed anywhere.")) -> None:
    """Process-wide settings, applied before torch or scikit-learn load their OpenMP runtime."""
    if debug:
        os.environ["SEEDFLOW_DEBUG"] = "1"
    # Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
    # made training and boosting up to 30x slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_demos(demos: list, data_dir: str | None) -> None:
    import ray

    from flows.runtime import prefect_api
    from tasks.common.ray_runtime import ensure_ray
    from tasks.common.tracking import tracking_uri

    ensure_ray()  # one Ray runtime for every flow: each task runner uses it (and leaves it up) instead of its own
    try:
        with prefect_api():  # one server for every pipeline's flows
            summaries = [run_demo(data_dir) for run_demo in demos]
    finally:
        ray.shutdown()
    typer.echo("\nDemo finished. Results:")
    for line in summaries:
        typer.echo(f"  {line}")
    typer.echo(f"  MLflow store: {tracking_uri()}  (browse: make mlflow-ui, then http://127.0.0.1:5000)")


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
        build_app()(prog_name="seedflow")
        return
    try:
        build_app()(prog_name="seedflow", standalone_mode=False)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except TyperException as exc:  # usage: a mistyped command, option or value
        typer.echo(usage_line(exc), err=True)
        sys.exit(2)
    except Exception as exc:
        typer.echo(one_line(exc), err=True)
        sys.exit(exit_code(exc))


def usage_line(exc: TyperException) -> str:
    """A usage error in the platform's one-line form: what is wrong (click names the option and its closest
    valid spellings), and where the valid ones are listed."""
    ctx = getattr(exc, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"error: {exc.format_message().rstrip('.')}{where}"


if __name__ == "__main__":
    run()
