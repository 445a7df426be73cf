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
    (["forecast", "run", "--set", "tune.nope=1"], "unknown parameter 'forecast.tune.nope'"),
    (["logs", "run", "--set", "pull.nope=1"], "unknown parameter 'logs.pull.nope'"),
])
def test_bad_input_is_one_line_before_any_server(tmp_path, args, message):
    result = seedflow(tmp_path, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr[-2000:]
    assert not (tmp_path / ".prefect" / "server.log").exists()  # no Prefect server was started (nor Ray: it comes after)


def test_debug_shows_the_traceback(tmp_path):
    result = seedflow(tmp_path, "llm", "pretrain", "--set", "nope=1", "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr
