"""How every flow runs: against a real Prefect API, on Ray, retrying only transient Ray failures.

- `prefect_api()`: `PREFECT_API_URL` if set, else a temporary `prefect server` on 127.0.0.1 for
  the command (ephemeral mode starts one server per process, and every Ray worker its own).
  Prefect may already be imported, so the URL is applied with `temporary_settings` as well as in
  the environment Ray workers inherit. Prefect's "View at" links are off for such a server (it is
  gone when the command ends). On the way out, even after SIGTERM, buffered flow-run logs are sent
  and the server is stopped.
- `run_flow("module:name", **params)`: the one way the CLI, the demo and the benchmarks call a flow.
- `task_runner()`: prefect-ray's RayTaskRunner on the settings of `tasks.common.ray_runtime`.
- `RETRY_TRANSIENT`: Prefect task options that retry a task once if Ray lost a worker or failed to
  deserialise a result under load; a bad input or a bug fails at once.
- `relay_lines(path, log)`: lines a Ray actor appends to a file (training progress) go to the
  flow run's log, so a run started from the UI shows its progress there.
- `worker_runs_end_with_flow()`: tags for the MLflow runs that Ray workers create for this flow
  run; if the flow fails or is interrupted, those still RUNNING are ended as FAILED.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tasks.common.errors import root_cause
from tasks.common.paths import project_root
from tasks.common.ports import free_port
from tasks.common.ray_runtime import ray_address, ray_init_kwargs

STARTUP_TIMEOUT_S = 90
PR_SET_PDEATHSIG = 1
TRANSIENT = ("RaySystemError", "WorkerCrashedError", "ActorDiedError", "NodeDiedError", "ObjectLostError",
             "OwnerDiedError", "ObjectFetchTimedOutError", "LocalRayletDiedError", "SystemError")


def prefect_env() -> dict[str, str]:
    """Settings every seedflow process shares: project-local state, no telemetry, INFO run logs."""
    return {
        "PREFECT_HOME": str(project_root() / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }


def apply_prefect_env() -> None:
    """Before Prefect is imported: it reads its settings then."""
    for key, value in prefect_env().items():
        os.environ.setdefault(key, value)


def _wait_healthy(api_url: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with code {proc.returncode} before becoming healthy "
                               f"(log: {server_log()})")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"prefect server at {api_url} not healthy after {timeout:.0f}s")


def _die_with_parent() -> None:
    """In the server's process: Linux ends it when the command that started it dies, however it dies
    (Prefect's engine re-raises SIGTERM with the default handler, so no `finally` runs then)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the `finally` below still stops it on a normal exit
        pass


def server_log() -> Path:
    """The temporary server's log, in the Prefect home in use (the user's PREFECT_HOME wins)."""
    return Path(os.environ.get("PREFECT_HOME") or prefect_env()["PREFECT_HOME"]) / "server.log"


def _start_server(port: int) -> subprocess.Popen:
    log_path = server_log()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env={**prefect_env(), **os.environ}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent)


@contextmanager
def _terminate_raises() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so runs end FAILED/CRASHED and the server stops (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def flush_run_logs() -> None:
    """Send the run logs this process has buffered (before its temporary server stops)."""
    try:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)
    except Exception:  # nothing to send, or Prefect never loaded: no log is lost that was ever written
        pass


@contextmanager
def prefect_api() -> Iterator[str]:
    """Yield the API URL in use, starting a temporary local server if none is configured."""
    apply_prefect_env()
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    proc = _start_server(port)
    try:
        with _terminate_raises():
            _wait_healthy(api_url, STARTUP_TIMEOUT_S, proc)
            os.environ["PREFECT_API_URL"] = api_url
            print(f"Prefect: a temporary server on 127.0.0.1:{port} for this command, so no UI links (it stops with the "
                  "command); for a lasting UI: `make prefect-server`, then export "
                  "PREFECT_API_URL=http://127.0.0.1:4200/api", file=sys.stderr)
            with temporary_settings({PREFECT_API_URL: api_url, PREFECT_UI_URL: ""}):
                try:
                    yield api_url
                finally:
                    flush_run_logs()
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """The server and the processes it started (its own session, so its own process group)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def run_flow(target: str, **params: Any) -> Any:
    """Call flow `module:name` with `params` against a Prefect API; nested calls share one server."""
    module, _, name = target.partition(":")
    with prefect_api():
        return getattr(importlib.import_module(module), name)(**params)


def task_runner():
    from prefect_ray import RayTaskRunner

    return RayTaskRunner(address=ray_address(), init_kwargs=ray_init_kwargs())


def transient_ray_failure(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except Exception as exc:  # the failure the state holds
        return any(type(e).__name__ in TRANSIENT for e in (exc, root_cause(exc)))
    return False


RETRY_TRANSIENT = {"retries": 1, "retry_delay_seconds": 2, "retry_condition_fn": transient_ray_failure}


@contextmanager
def relay_lines(path: str | Path, log: Callable[[str], None], every_s: float = 1.0) -> Iterator[None]:
    """Send the lines appended to `path` while the block runs to `log`."""
    path, done = Path(path), threading.Event()
    offset = path.stat().st_size if path.is_file() else 0

    def pump() -> None:
        nonlocal offset
        while True:
            finished = done.wait(every_s)
            if path.is_file():
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                complete = chunk[: chunk.rfind(b"\n") + 1]
                offset += len(complete)
                for line in complete.decode(errors="replace").splitlines():
                    log(line)
            if finished:
                return

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=10)


@contextmanager
def worker_runs_end_with_flow() -> Iterator[dict[str, str]]:
    from prefect.runtime import flow_run

    from tasks.common.tracking import fail_open_runs

    tags = {"prefect_flow_run_id": str(flow_run.id)}
    try:
        yield tags
    except BaseException:
        fail_open_runs("prefect_flow_run_id", tags["prefect_flow_run_id"])
        raise
