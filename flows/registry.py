"""Every pipeline, by the name of its module under flows/: adding a pipeline is one line here.

A pipeline module exports `app` (its typer sub-app, mounted as `seedflow <name>`) and, where it has
them, `FLOWS` (served as deployments), `BENCHES` (`seedflow bench <key>`) and `demo(data_dir) -> str`
(one summary line for `seedflow demo`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

PIPELINES = ["forecast", "llm", "logs", "cloud", "data"]


def pipelines(names: list[str] | None = None) -> dict[str, ModuleType]:
    return {name: importlib.import_module(f"flows.{name}") for name in (names or PIPELINES)}
