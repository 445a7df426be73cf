"""The shape every pipeline follows: one module under flows/ plus a registry line, pure code under tasks/."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TOY = textwrap.dedent('''
    """A toy pipeline: one flow, a sub-app, a bench and a demo."""
    import typer
    from prefect import flow

    from flows.runtime import run_flow


    @flow(name="toy_double")
    def toy_double(x: int = 2) -> int:
        return 2 * x


    FLOWS = [toy_double]
    app = typer.Typer(no_args_is_help=True)


    @app.command()
    def double(x: int = 2) -> None:
        typer.echo(f"doubled: {run_flow('flows.toy:toy_double', x=x)}")


    def bench() -> None:
        print('{"toy": 1}')


    BENCHES = {"toy": bench}


    def demo(data_dir):
        return "toy: done"
''')


def test_a_new_pipeline_is_one_module_and_one_registry_line(tmp_path, monkeypatch, prefect_server):
    from typer.testing import CliRunner

    import flows
    from flows import deployments, registry
    from flows.cli import build_app

    (tmp_path / "toy.py").write_text(TOY)
    monkeypatch.setattr(flows, "__path__", [*flows.__path__, str(tmp_path)])  # the module's file, in flows/
    monkeypatch.setattr(registry, "PIPELINES", [*registry.PIPELINES, "toy"])  # the registry line
    monkeypatch.delitem(sys.modules, "flows.toy", raising=False)

    app = build_app()
    runner = CliRunner()
    assert "doubled: 10" in runner.invoke(app, ["toy", "double", "--x", "5"]).output
    assert runner.invoke(app, ["bench", "toy"]).output.strip().endswith('{"toy": 1}')
    assert "toy_double" in [f.name for f in deployments.all_flows()]


def test_tasks_never_import_prefect_or_typer():
    offenders = []
    for path in (ROOT / "tasks").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ("prefect", "prefect_ray", "typer")]
    assert not offenders, offenders
