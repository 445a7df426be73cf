"""A real Prefect API for every flow run.

Ephemeral mode starts one temporary server per process, and with RayTaskRunner each Ray worker
starts its own against one SQLite file ("database is locked"). So when `PREFECT_API_URL` is not
set we start `prefect server` on 127.0.0.1 for the duration of the command, with the project's
own PREFECT_HOME, and point this process and its Ray workers at it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tasks.common.paths import project_root

STARTUP_TIMEOUT_S = 90


def prefect_env() -> dict[str, str]:
    """Settings every seedflow process shares: project-local state, no telemetry."""
    return {
        "PREFECT_HOME": str(project_root() / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(api_url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with code {proc.returncode} before becoming healthy")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"prefect server at {api_url} not healthy after {timeout:.0f}s")


def start_server(port: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, **prefect_env()}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextmanager
def prefect_api() -> Iterator[str]:
    """Yield the API URL in use, starting a temporary local server if none is configured."""
    for key, value in prefect_env().items():
        os.environ.setdefault(key, value)
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    proc = start_server(port, project_root() / ".prefect" / "server.log")
    try:
        wait_healthy(api_url, STARTUP_TIMEOUT_S, proc)
        os.environ["PREFECT_API_URL"] = api_url
        yield api_url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
