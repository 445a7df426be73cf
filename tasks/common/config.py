"""Typed configuration: one section of params.yaml, dotted overrides, pydantic validation.

CLI flags (`--set a.b=3`), Prefect flow parameters (`overrides={"a.b": 3}`) and DVC (which
reads params.yaml directly) all land on the same model, so a run is described the same way
wherever it was started. Unknown keys and wrong types are errors that name the key.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tasks.common.paths import project_root

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A parameter file or override that does not fit the typed configuration."""


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are rejected, not ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def check_known_models(models: list[str], choices: Iterable[str]) -> list[str]:
    """`models` unchanged if every one is among `choices`; for a section's `models` validator."""
    unknown = [m for m in models if m not in choices]
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {list(choices)}")
    return models


def params_path() -> Path:
    return project_root() / "params.yaml"


def read_params(path: str | Path | None = None) -> dict[str, Any]:
    path = Path(path) if path else params_path()
    if not path.is_file():
        raise ConfigError(f"parameter file {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def parse_assignments(assignments: Iterable[str]) -> dict[str, Any]:
    """Turn CLI `key.path=value` strings into overrides; values are parsed as YAML."""
    overrides: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        overrides[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return overrides


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any], section: str) -> dict[str, Any]:
    """Return a copy of `data` with dotted `overrides` set; unknown keys are errors."""
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = out
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            where = ".".join([section, *parts[: depth + 1]])
            if not isinstance(node, dict) or part not in node:
                known = ", ".join(sorted(node)) if isinstance(node, dict) else "none (not a mapping)"
                raise ConfigError(f"unknown parameter {where!r}; known keys here: {known}")
            if depth == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    return out


def load_config(
    model: type[M],
    section: str,
    overrides: Mapping[str, Any] | None = None,
    params_file: str | Path | None = None,
) -> M:
    """Validate `params.yaml[section]` plus overrides against `model`."""
    params = read_params(params_file)
    if section not in params:
        raise ConfigError(f"params.yaml has no section {section!r} (sections: {', '.join(params)})")
    data = apply_overrides(params[section] or {}, overrides or {}, section)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{section}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid parameters: {problems}") from exc
