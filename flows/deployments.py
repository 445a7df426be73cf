"""Deployments for the Prefect UI: `seedflow serve` serves every registered pipeline's flows.

Runs start about ten seconds after a click in the UI (the runner's poll interval). Each flow is
loaded by its module path (`flows.llm.chat_stages.llm_midtrain`), not its file name, so the Ray workers it
starts can import the same module.
"""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import EntrypointType

from flows.registry import pipelines


def all_flows() -> list:
    return [flow for module in pipelines().values() for flow in getattr(module, "FLOWS", [])]


def serve_all() -> None:
    serve(*(flow.to_deployment(name=f"{flow.name}-local", tags=["seedflow"], entrypoint_type=EntrypointType.MODULE_PATH)
            for flow in all_flows()))
