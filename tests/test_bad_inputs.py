"""Bad input ends a command with one line and exit 2, before Prefect or Ray start, and writes nothing.

One table: each case is a command as a user would type it, run through the entry point `seedflow`
runs, in this process (so a case costs no interpreter start-up), in a fresh project root holding
only params.yaml and the case's input files.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def write_inputs(root: Path) -> None:
    """The faulty files the cases below point at, under `root/inputs` (the data dir of some cases)."""
    inputs = root / "inputs"
    (inputs / "energy").mkdir(parents=True)
    (inputs / "empty.txt").write_bytes(b"")
    (inputs / "blank.txt").write_bytes(b" \n\n\t \n")
    (inputs / "latin1_first_byte.txt").write_bytes(b"\xe9t\xe9 " * 10)
    (inputs / "latin1_at_50003.txt").write_bytes(b"a" * 50_003 + b"\xe9" + b"b" * 100)
    (inputs / "header_only.csv").write_text("timestamp,content\n")
    (inputs / "no_content.csv").write_text("timestamp,level\n1700000000,INFO\n1700000001,WARN\n")
    (inputs / "incidents.csv").write_text("start,end\n1700000000,1700000060\n")
    (inputs / "taken" / "model").mkdir(parents=True)
    (inputs / "taken" / "model" / "meta.json").write_text("{}")  # an earlier run's model
    times = [f"2023-06-08 {h:02d}:{m:02d}:00" for h in range(2) for m in range(0, 60, 5)]
    values = [200.0] * len(times)
    values[7] = -12.5
    (inputs / "energy" / "negative.csv").write_text(
        "time,mci\n" + "".join(f"{t},{v}\n" for t, v in zip(times, values)))


def logs_dataset(path: str) -> list[str]:
    return ["logs", "run", "--set", f"datasets=[{{name: x, format: generic, path: {path}, incidents: incidents.csv}}]",
            "--set", "run=[x]", "--data-dir", "{inputs}"]


CASES = [
    # -- refused late and loud before (#27): now one line up front
    (["llm", "tokenize", "--corpus", "{inputs}/empty.txt"], "holds no text"),
    (["llm", "tokenize", "--corpus", "{inputs}/blank.txt"], "holds no text"),
    (["llm", "tokenize", "--corpus", "{inputs}/latin1_first_byte.txt"], "is not UTF-8 text (byte 0 "),
    (["llm", "tokenize", "--corpus", "{inputs}/latin1_at_50003.txt"], "is not UTF-8 text (byte 50003 "),
    (logs_dataset("header_only.csv"), "no valid log lines"),
    (logs_dataset("no_content.csv"), "needs a `timestamp` and a `content` or `message` column"),
    (["llm", "pretrain", "--set", "compile=false", "--set", "sdc.inject.enabled=true",
      "--set", "sdc.inject.layer=transformer.h.9.nosuch"], "is not a Linear of the depth-4 GPT"),
    # -- accepted before, refused now (#27, #28)
    (["llm", "pretrain", "--set", "compile=false", "--set", "sdc.inject.enabled=true", "--set", "sdc.inject.bits=[40]"],
     "are not bit positions of"),  # float32 or bfloat16, as the CPU decides
    (["llm", "pretrain", "--mode", "diloco", "--steps", "4", "--set", "diloco.inner_steps=2",
      "--set", "sites=[{name: a}, {name: b, join_round: 5}]"], "join after the last of the run's 2 rounds"),
    (["llm", "pretrain", "--mode", "diloco", "--set", "sites=[{name: a}, {name: b, join_round: 3, leave_round: 2}]"],
     "so it never trains"),
    (["llm", "curtail", "--data-dir", "{inputs}", "--set", "sites=[{name: a, trace: energy/negative.csv}]"],
     "a negative carbon intensity"),
    (["llm", "curtail", "--policy", "forecast", "--set", "start_s=3600"], "23 h missing"),
    # -- usage errors name the option, exit 2 (#27, #28)
    (["llm", "pretrain", "--steps", "abc"], "Invalid value for '--steps'"),
    (["llm", "pretran"], "Did you mean 'pretrain'?"),
    (["llm", "pretrain", "--stpes", "3"], "--steps"),
    (["llm", "tasks", "gsm8k"], "run `seedflow llm tokenize` first, or pass --tokenizer"),
    # -- a sample of the refusals that were already one line
    (["llm", "pretrain", "--set", "nope=1"], "unknown parameter 'llm.pretrain.nope'"),
    (["llm", "pretrain", "--mode", "bogus"], "llm.pretrain.mode"),
    (["llm", "pretrain", "--set", "tokens_dir=/nonexistent"], "/nonexistent holds no token shards"),
    (["llm", "pretrain", "--set", "compile=false", "--set", "out_dir={inputs}/taken"],
     "already holds a run (model/); pass --resume to continue it, --overwrite to replace it"),
    (["llm", "eval", "--checkpoint", "/nonexistent"], "no checkpoint at /nonexistent"),
    (["llm", "pretrain", "--mode", "diloco", "--sites", "a:two"], "--sites item 'a:two' is not name[:workers]"),
    (["llm", "pretrain", "--set", "device=cuda"], "device: cuda, but no GPU is visible"),
    (["llm", "curtail", "--set", "threshold=-1"], "llm.curtail.threshold"),
    (["llm", "curtail", "--set", "pretrain.nope=1"], "unknown parameter 'llm.curtail.pretrain.nope'"),
    (["llm", "curtail", "--data-dir", str(SHARED), "--set",
      "sites=[{name: a, trace: energy/solar_example.csv, column: Berlin}, {name: b, trace: energy/nope.csv}]"],
     "energy/nope.csv"),
    (["forecast", "run", "--set", "tune.nope=1"], "unknown parameter 'forecast.tune.nope'"),
    (["logs", "run", "--set", "pull.nope=1"], "unknown parameter 'logs.pull.nope'"),
    (["cloud", "run", "--workloads", "spark/nope/huge"], "workloads ['spark/nope/huge'] are not in"),
    (["cloud", "optimize", "--workload", "join", "--max-runtime", "900"], "--workload 'join' must be framework/workload/datasize"),
]


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_before_any_server(tmp_path, monkeypatch, args, message):
    """Output goes to buffers that stay open: a stream Prefect's console handler picks up must outlive the test."""
    import ray

    from flows.cli import run

    project, prefect_home = tmp_path / "project", tmp_path / "prefect"
    project.mkdir()
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    write_inputs(project)
    before = files_under(project)
    monkeypatch.setenv("SEEDFLOW_ROOT", str(project))
    monkeypatch.setenv("PREFECT_HOME", str(prefect_home))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("SEEDFLOW_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["seedflow", *(a.replace("{inputs}", str(project / "inputs")) for a in args)])
    ray_before = ray.is_initialized()
    out_buf, err_buf = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exited, redirect_stdout(out_buf), redirect_stderr(err_buf):
        run()
    out, err = out_buf.getvalue(), err_buf.getvalue()
    assert exited.value.code == 2 and out == "", (out, err[-2000:])
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err[-2000:]
    assert ray.is_initialized() == ray_before  # no Ray runtime
    assert not (prefect_home / "server.log").exists()  # no Prefect server
    assert files_under(project) == before  # nothing written: no results, no MLflow store


def test_debug_shows_the_traceback_and_the_console_script_exits_2(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "SEEDFLOW_ROOT": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_API_URL", None)
    env.pop("SEEDFLOW_DEBUG", None)

    def seedflow(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, capture_output=True, text=True,
                              timeout=300)

    assert seedflow("llm", "pretrain", "--set", "nope=1").returncode == 2
    result = seedflow("llm", "pretrain", "--set", "nope=1", "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr
