"""Typed configuration: one section of params.yaml, dotted overrides, pydantic validation.

CLI flags (`--set a.b=3`), Prefect flow parameters (`overrides={"a.b": 3}`) and DVC (which
reads params.yaml directly) all land on the same model, so a run is described the same way
wherever it was started. Unknown keys and wrong types are errors that name the key.

One override syntax at every depth: `{"a.b.c": 1}` and `{"a": {"b": {"c": 1}}}` mean the same
where `a.b` is a nested section; a mapping given for a plain dict-valued parameter replaces it;
a field typed `Overrides` (e.g. the study's `pretrain`) holds overrides of another section and
takes any dotted key, checked when that section is validated.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tasks.common.errors import InputError
from tasks.common.paths import project_root

M = TypeVar("M", bound=BaseModel)


class ConfigError(InputError):
    """A parameter file or override that does not fit the typed configuration."""


OVERRIDES = "overrides of another section"
Overrides = Annotated[dict[str, Any], OVERRIDES]


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


def _field_kind(model: type[BaseModel] | None, key: str) -> tuple[str, type[BaseModel] | None]:
    """("model", sub-model) for a nested section, ("overrides", None), ("value", None) or ("unknown", None)."""
    if model is None:
        return "value", None
    field = model.model_fields.get(key)
    if field is None:
        return "unknown", None
    if OVERRIDES in field.metadata:
        return "overrides", None
    annotation = field.annotation
    candidates = get_args(annotation) if get_origin(annotation) is not None else (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return "model", candidate
    return "value", None


def _set(node: dict[str, Any], parts: list[str], value: Any, where: list[str], model: type[BaseModel] | None) -> None:
    key, rest = parts[0], parts[1:]
    here = ".".join([*where, key])
    kind, sub_model = _field_kind(model, key)
    if kind == "unknown" or (model is None and key not in node):
        known = sorted(set(node) | set(model.model_fields if model else ()))
        raise ConfigError(f"unknown parameter {here!r}; known keys here: {', '.join(known) or 'none'}")
    if kind == "overrides":
        target = node.setdefault(key, {})
        if rest:
            target[".".join(rest)] = value
        elif isinstance(value, Mapping):
            target.update(value)
        else:
            raise ConfigError(f"{here} takes a mapping of parameter overrides, got {value!r}")
        return
    if not rest and not (kind == "model" and isinstance(value, Mapping)):
        node[key] = value
        return
    child = node.setdefault(key, {})
    if not isinstance(child, dict):
        raise ConfigError(f"unknown parameter {here + '.' + rest[0]!r}; {here} is not a mapping")
    items = {".".join(rest): value}.items() if rest else value.items()
    for dotted, item in items:
        _set(child, str(dotted).split("."), item, [*where, key], sub_model)


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any], section: str,
                    model: type[BaseModel] | None = None) -> dict[str, Any]:
    """Return a copy of `data` with `overrides` set (dotted or nested keys); unknown keys are errors.

    With `model`, a key is known when the model has it (params.yaml need not list every key);
    without, only keys present in `data` are."""
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        _set(out, str(dotted).split("."), value, section.split("."), model)
    return out


def section_of(params: dict[str, Any], section: str) -> dict[str, Any]:
    """`params["a"]["b"]` for section "a.b"."""
    node: Any = params
    for depth, part in enumerate(section.split(".")):
        if not isinstance(node, dict) or part not in node:
            found = ", ".join(node) if isinstance(node, dict) else "none"
            where = ".".join(section.split(".")[:depth]) or "params.yaml"
            raise ConfigError(f"params.yaml has no section {section!r} (found in {where}: {found})")
        node = node[part]
    return node or {}


def load_config(
    model: type[M],
    section: str,
    overrides: Mapping[str, Any] | None = None,
    params_file: str | Path | None = None,
    named: str | None = None,
) -> M:
    """Validate `params.yaml[section]` (dotted: "llm.pretrain") plus overrides against `model`.

    `named`: where the overrides were given, for error messages, when that is another section's key
    (the curtailment run's `llm.curtail.pretrain` overrides `llm.pretrain`)."""
    data = apply_overrides(section_of(read_params(params_file), section), overrides or {}, named or section, model)
    return validate(model, data, named or section)


def validate(model: type[M], data: Mapping[str, Any], section: str) -> M:
    """`model.model_validate(data)` with every problem named by its dotted key, in one line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join([section, *(str(p) for p in err['loc'])])}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid parameters: {problems}") from exc
