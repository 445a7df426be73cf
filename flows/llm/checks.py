"""Input checks run once per command, before any Prefect server or Ray worker starts.

A `seedflow llm` command resolves the data folder and checks its inputs (one line and exit 2 on bad
input, nothing started), then starts its flow with `run_checked`, and the flow skips both. A flow
started from the Prefect UI or API has no command in front of it: `at_flow_start` does both there,
and a refusal names the run form's parameters, not the command's flags. The mark is a context
variable, so it holds only for the flow a command calls in its own thread.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from flows.runtime import run_flow

_CHECKED: ContextVar[bool] = ContextVar("seedflow_llm_inputs_checked", default=False)


def resolve_data_dir(data_dir: str | None) -> str | None:
    """The datasets folder as an absolute path; None where none exists (the tasks use generated inputs)."""
    from tasks.common.paths import data_dir as find_data_dir

    folder = find_data_dir(data_dir)
    return str(folder) if folder else None


def run_checked(target: str, **params: Any) -> Any:
    """Run flow `target` for a command that has resolved its data folder and checked its inputs."""
    token = _CHECKED.set(True)
    try:
        return run_flow(target, **params)
    finally:
        _CHECKED.reset(token)


def at_flow_start(check: Callable[[str | None], None], data_dir: str | None = None) -> str | None:
    """In a flow: `check(resolved data_dir)`, then the resolved folder; both skipped where a command did them."""
    from tasks.llm.train.run_folder import RunFolderTaken

    if _CHECKED.get():
        return data_dir
    data_dir = resolve_data_dir(data_dir)
    try:
        check(data_dir)
    except RunFolderTaken as exc:
        raise exc.in_flow_run() from None
    return data_dir
