"""The data pipeline: `seedflow data import`, public datasets into the repository's data/, tracked by DVC.

The stages in dvc.yaml read data/ only; this command is how a source folder gets there.
"""

from __future__ import annotations

import typer

from flows.options import comma_list

app = typer.Typer(help="Input data: DVC-tracked folders under data/ (import, then git commit and dvc push).",
                  no_args_is_help=True)


@app.command("import")
def import_(
    source: str = typer.Argument(None, help="Datasets folder (default: SEEDFLOW_DATA, else ../shared/datasets)."),
    only: str = typer.Option(None, help="Comma-separated folders to import (default: load,logs,text,eval, "
                                        "what the stages read)."),
) -> None:
    """Copy SOURCE's folders into data/ and track them with DVC (`dvc add`), as data/<folder>.dvc files."""
    from tasks.common.datasets import DATA_DIR, import_datasets

    results = import_datasets(source, comma_list(only))
    for item in results:
        plural = "" if item.files == 1 else "s"
        typer.echo(f"{DATA_DIR}/{item.folder}: {item.files} file{plural}, {item.size / 1e6:.1f} MB, {item.state} "
                   f"({DATA_DIR}/{item.dvc_file.name})")
    if any(item.state != "unchanged" for item in results):
        files = " ".join(f"{DATA_DIR}/{item.folder}.dvc" for item in results)
        typer.echo(f"next: git add {files} {DATA_DIR}/.gitignore && git commit, then `dvc push` to the remote")
