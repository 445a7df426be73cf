"""What every pipeline's CLI and flows share: options, override parsing, parameter defaults.

`default(section, key)` gives typed flow parameters their params.yaml value, so the Prefect UI's
run form shows the same defaults as `seedflow` and `dvc repro`. A params.yaml that cannot be read
gives None here; the flow's own `load_config` then reports it in one line.
"""

from __future__ import annotations

import functools
from typing import Any

import typer

DATA_DIR_OPTION = typer.Option(None, "--data-dir", help="Public datasets folder (default: SEEDFLOW_DATA, else ../shared/datasets).")
OVERWRITE_OPTION = typer.Option(None, "--overwrite/--no-overwrite",
                                help="Replace an earlier run in out_dir (without it such a run is refused).")


def set_option(example: str):
    """The `--set key=value` option, with an example from the pipeline's own section."""
    return typer.Option(None, "--set", "-s", help=f"Override a parameter of this pipeline's params.yaml section, e.g. --set {example}.")


def comma_list(value: str | None) -> list[str] | None:
    """`a,b , c` -> ["a", "b", "c"]; None stays None (flag not given)."""
    return None if value is None else [item.strip() for item in value.split(",") if item.strip()]


def int_list(value: str, option: str) -> list[int]:
    try:
        numbers = [int(item) for item in comma_list(value) or []]
    except ValueError:
        numbers = []
    if not numbers:
        raise typer.BadParameter(f"{option} takes comma-separated integers, got {value!r}")
    return numbers


def cli_overrides(assignments: list[str] | None, **flags) -> dict:
    """`--set k=v` assignments plus the explicit flags that were given (None = not given)."""
    from tasks.common.config import parse_assignments

    overrides = parse_assignments(assignments or [])
    overrides.update({key: value for key, value in flags.items() if value is not None})
    return overrides


@functools.cache
def default(section: str, key: str, fallback: Any = None) -> Any:
    """params.yaml's value of `section.key` (section dotted, e.g. "llm.pretrain"), else `fallback` (the
    config model's own default, for a key the section leaves out)."""
    from tasks.common.config import ConfigError, read_params, section_of

    try:
        return section_of(read_params(), section).get(key, fallback)
    except ConfigError:
        return None


def flow_overrides(overrides: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    """A flow's typed fields as overrides, then its free-form `overrides` on top (they win)."""
    return {**{k: v for k, v in fields.items() if v is not None}, **(overrides or {})}
