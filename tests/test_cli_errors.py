"""Bad input ends a command with one line and a non-zero exit, before Prefect or Ray start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def seedflow(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process whose project root (params.yaml, .prefect/) is `tmp_path`."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "SEEDFLOW_ROOT": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_API_URL", None)
    env.pop("SEEDFLOW_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args, message", [
    (["llm", "pretrain", "--set", "nope=1"], "unknown parameter 'llm.pretrain.nope'"),
    (["llm", "pretrain", "--mode", "bogus"], "llm.pretrain.mode"),
    (["llm", "pretrain", "--set", "tokens_dir=/nonexistent"], "/nonexistent holds no token shards"),
    (["llm", "eval", "--checkpoint", "/nonexistent"], "no checkpoint at /nonexistent"),
    (["llm", "pretrain", "--mode", "diloco", "--sites", "a:two"], "--sites item 'a:two' is not name[:workers]"),
    (["llm", "pretrain", "--set", "device=cuda"], "device: cuda, but no GPU is visible"),
    (["llm", "curtail", "--set", "threshold=-1"], "llm.curtail.threshold"),
    (["llm", "curtail", "--data-dir", str(ROOT.parent / "shared" / "datasets"), "--set",
      "sites=[{name: a, trace: energy/solar_example.csv, column: Berlin}, {name: b, trace: energy/nope.csv}]"],
     "energy/nope.csv"),
    (["forecast", "run", "--set", "tune.nope=1"], "unknown parameter 'forecast.tune.nope'"),
    (["logs", "run", "--set", "pull.nope=1"], "unknown parameter 'logs.pull.nope'"),
    (["cloud", "run", "--workloads", "spark/nope/huge"], "workloads ['spark/nope/huge'] are not in"),
    (["cloud", "optimize", "--workload", "join", "--max-runtime", "900"], "--workload 'join' must be framework/workload/datasize"),
])
def test_bad_input_is_one_line_before_any_server(tmp_path, monkeypatch, args, message):
    """Through the entry point `seedflow` runs (in this process, so each case costs no start-up).

    Output goes to buffers that stay open: a stream Prefect's console handler picks up must outlive the test."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    import ray

    from flows.cli import run

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.setenv("SEEDFLOW_ROOT", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("SEEDFLOW_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["seedflow", *args])
    ray_before = ray.is_initialized()
    out_buf, err_buf = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exited, redirect_stdout(out_buf), redirect_stderr(err_buf):
        run()
    out, err = out_buf.getvalue(), err_buf.getvalue()
    assert exited.value.code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err[-2000:]
    assert not (tmp_path / ".prefect" / "server.log").exists()  # no Prefect server was started
    assert ray.is_initialized() == ray_before  # nor Ray


def test_debug_shows_the_traceback_and_the_console_script_exits_2(tmp_path):
    assert seedflow(tmp_path, "llm", "pretrain", "--set", "nope=1").returncode == 2
    result = seedflow(tmp_path, "llm", "pretrain", "--set", "nope=1", "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr
