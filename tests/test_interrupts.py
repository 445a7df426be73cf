"""A run killed with SIGTERM ends its MLflow run as FAILED and stops the Prefect server it started,
even when the store is busy for longer than Ray's abort-on-SIGTERM alarm (3 s) would have allowed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_sigterm_ends_the_mlflow_run_and_the_temporary_server(tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    from tasks.llm.data.shards import write_shards
    from tasks.llm.data.tokenizer import Tokenizer

    docs = [f"line {i}: to be or not to be, that is the question. " * 4 for i in range(300)]
    write_shards(docs, Tokenizer.train(docs, vocab_size=320), tmp_path / "tokens", val_fraction=0.1)
    settings = [f"tokens_dir={tmp_path / 'tokens'}", f"out_dir={tmp_path / 'run'}", "depth=1", "sequence_len=32",
                "device_batch_size=2", "compile=false", "eval_every=0", "checkpoint_every=0", "threads_per_worker=1",
                "experiment=interrupt-test", "register_model=false"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store}
    env.pop("PREFECT_API_URL", None)  # the command starts its own temporary server
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "llm", "pretrain", "--mode", "single", "--steps", "100000",
                             *[arg for s in settings for arg in ("--set", s)]], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client, deadline, servers = MlflowClient(mlflow_store), time.monotonic() + 240, []
    while time.monotonic() < deadline and proc.poll() is None:
        servers = servers or [p for p in psutil.Process(proc.pid).children(recursive=True)
                              if "server" in " ".join(p.cmdline()) and "prefect" in " ".join(p.cmdline())]
        experiment = client.get_experiment_by_name("interrupt-test")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and (tmp_path / "run" / "progress.log").is_file():
            break
        time.sleep(0.5)
    if not (proc.poll() is None and runs and servers):
        proc.kill()
        pytest.fail(f"training never started: {proc.communicate()[1].decode()[-3000:]}")

    store = sqlite3.connect(mlflow_store.removeprefix("sqlite:///"), isolation_level=None, timeout=60)
    store.execute("BEGIN EXCLUSIVE")  # a busy store: ending the run must wait for it, as on a loaded machine
    proc.send_signal(signal.SIGTERM)
    time.sleep(5)
    store.execute("COMMIT")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert client.get_run(runs[0].info.run_id).info.status == "FAILED", stderr.decode()[-6000:]
    _, alive = psutil.wait_procs(servers, timeout=30)
    assert not alive
