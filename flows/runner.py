"""Run a Prefect flow from the CLI: against `PREFECT_API_URL`, else a temporary local server.

The flow module is imported only once the API is up, because Prefect's client keeps the first
URL it sees. Nested calls (the demo runs several pipelines) share the outer server.
"""

from __future__ import annotations

import importlib
from typing import Any


def run_flow(target: str, **params: Any) -> Any:
    """Call flow `module:name` with `params` and return its result."""
    from tasks.common.prefect_api import prefect_api

    module, _, name = target.partition(":")
    with prefect_api():
        return getattr(importlib.import_module(module), name)(**params)
