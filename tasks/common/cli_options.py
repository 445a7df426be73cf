"""Options every pipeline command shares, so they read and behave the same."""

from __future__ import annotations

import typer

SET_OPTION = typer.Option(
    None, "--set", "-s", help="Override a parameter of this pipeline's params.yaml section, e.g. --set tune.num_samples=4."
)
DATA_DIR_OPTION = typer.Option(None, "--data-dir", help="Public datasets folder (default: SEEDFLOW_DATA, else ../shared/datasets).")
