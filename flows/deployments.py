"""Deployments for the Prefect UI: `seedflow serve` serves every flow from one process.

Runs start about ten seconds after a click in the UI (the runner's poll interval); parameters
are the flow's `overrides` (dotted params.yaml keys) and `data_dir`.
"""

from __future__ import annotations

from prefect import serve


def all_flows():
    from flows.forecast import forecast_flow
    from flows.llm import llm_pretrain, llm_tokenize
    from flows.llm_stages import llm_eval, llm_midtrain, llm_sft, llm_study
    from flows.logs import logs_flow

    return [forecast_flow, llm_tokenize, llm_pretrain, logs_flow, llm_midtrain, llm_sft, llm_eval, llm_study]


def serve_all() -> None:
    serve(*(flow.to_deployment(name=f"{flow.name}-local", tags=["seedflow"]) for flow in all_flows()))
