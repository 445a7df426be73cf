"""Options every pipeline command shares, so they read and behave the same."""

from __future__ import annotations

import typer

SET_OPTION = typer.Option(
    None, "--set", "-s", help="Override a parameter of this pipeline's params.yaml section, e.g. --set tune.num_samples=4."
)
DATA_DIR_OPTION = typer.Option(None, "--data-dir", help="Public datasets folder (default: SEEDFLOW_DATA, else ../shared/datasets).")


def comma_list(value: str | None) -> list[str] | None:
    """`a,b , c` -> ["a", "b", "c"]; None stays None (flag not given)."""
    return None if value is None else [item.strip() for item in value.split(",") if item.strip()]


def cli_overrides(assignments: list[str] | None, **flags) -> dict:
    """`--set k=v` assignments plus the explicit flags that were given (None = not given)."""
    from tasks.common.config import parse_assignments

    overrides = parse_assignments(assignments or [])
    overrides.update({key: value for key, value in flags.items() if value is not None})
    return overrides
