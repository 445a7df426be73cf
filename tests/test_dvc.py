"""The DVC pipeline as a user meets it: real git, real DVC, the real `seedflow data import`.

A temporary repository gets the project's code, dvc.yaml, params.yaml and ignore files, a tiny
generated datasets folder is imported into data/, and the cheapest stage (`logs_parse` on 40
generated BGL lines) is reproduced, pushed to a temporary remote and pulled into a second clone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIED = ["flows", "tasks", "dvc.yaml", "params.yaml", ".gitignore", ".dvcignore", ".dvc/config", ".dvc/.gitignore",
          "data/.gitignore"]
LLM_STAGES = ["pretrain", "midtrain", "sft", "eval"]


def _env() -> dict[str, str]:
    """This venv first on PATH (dvc, python); no settings that would point the stages elsewhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("SEEDFLOW_ROOT", "SEEDFLOW_DATA", "SEEDFLOW_DEBUG")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def sh(cwd: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh(cwd, sys.executable, "-m", "dvc", *args, check=check)


def seedflow(cwd: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI as dvc.yaml runs it: `python -m flows.cli` imports the code of the repository in `cwd`."""
    return sh(cwd, sys.executable, "-m", "flows.cli", *args, check=check, env=env)


def stage_status(cwd: Path, *stages: str) -> dict:
    return json.loads(dvc(cwd, "status", "--json", *stages).stdout or "{}")


def stage_outs(repo: Path, stage: str) -> list[str]:
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"][stage]
    return [next(iter(e)) if isinstance(e, dict) else e for kind in ("outs", "metrics", "plots") for e in spec.get(kind, [])]


def commit(repo: Path, message: str) -> None:
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", message)


def bgl_lines(n: int = 40) -> str:
    """BGL lines in loghub's format; every fifth is an alert."""
    lines = []
    for i in range(n):
        label, level, text = ("KERNDTLB", "FATAL", "data TLB error interrupt") if i % 5 == 4 else \
            ("-", "INFO", f"instruction cache parity error corrected {i % 3}")
        node = f"R0{i % 3}-M1-N0-C:J12-U11"
        lines.append(f"{label} {1117838570 + 7 * i} 2005.06.03 {node} 2005-06-03-15.42.{i % 60:02d}.675872 {node} "
                     f"RAS KERNEL {level} {text}")
    return "\n".join(lines) + "\n"


def make_source(folder: Path) -> Path:
    """A datasets folder shaped like ../shared/datasets, a few KB in all."""
    files = {
        "logs/BGL_2k.log": bgl_lines(),
        "load/taxi_1h.csv": "date,messages\n" + "".join(f"2020-01-01 {h:02d}:00:00,{100 + h}\n" for h in range(24)),
        "text/tinyshakespeare.txt": "".join(f"Citizen {i}:\nBefore we proceed any further, hear me speak.\n\n"
                                            for i in range(400)),
        "eval/gsm8k_test.jsonl": json.dumps({"question": "1+1?", "answer": "2\n#### 2"}) + "\n",
        "energy/solar_example.csv": "t,x\n0,1\n",
        "cloud/scout_multinode.csv": "workload,framework,datasize,vm_type,nodes,elapsed_time_s,completed\n"
                                     "join,spark,huge,c4.large,4,100.0,true\n",
        "cloud/ec2_prices.csv": "vm_type,usd_per_hour\nc4.large,0.1\n",
    }
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def make_repo(repo: Path, remote: Path) -> Path:
    """The project's pipeline files in a fresh git repository, its default remote pointed at `remote`."""
    for name in COPIED:
        source, target = ROOT / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, target)
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("  run: [spirit, bgl_2k]", "  run: [bgl_2k]"))
    sh(repo, "git", "init", "-q")
    for key, value in (("user.name", "test"), ("user.email", "test@example.com")):
        sh(repo, "git", "config", key, value)
    commit(repo, "pipeline")
    dvc(repo, "remote", "modify", "--local", "local", "url", str(remote))
    return repo


def clone(origin: Path, target: Path, remote: Path) -> Path:
    sh(origin.parent, "git", "clone", "-q", str(origin), str(target))
    dvc(target, "remote", "modify", "--local", "local", "url", str(remote))
    return target


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Import the tiny source, reproduce `logs_parse`, commit, push: the state a user shares."""
    base = tmp_path_factory.mktemp("dvc")
    source, remote = make_source(base / "source"), base / "remote"
    repo = make_repo(base / "repo", remote)
    seedflow(repo, "data", "import", str(source))
    commit(repo, "data")
    dvc(repo, "repro", "logs_parse")
    commit(repo, "repro logs_parse")
    dvc(repo, "push")
    return {"base": base, "repo": repo, "source": source, "remote": remote}


def test_repro_leaves_status_and_git_clean(pipeline):
    repo = pipeline["repo"]
    imported = sorted(p.name for p in (repo / "data").glob("*.dvc"))
    assert imported == ["cloud.dvc", "energy.dvc", "eval.dvc", "load.dvc", "logs.dvc", "text.dvc"]
    assert (repo / "results/logs/parsed/bgl_2k.parquet").is_file()
    assert stage_status(repo, "logs_parse") == {}
    assert sh(repo, "git", "status", "--porcelain").stdout == ""


def test_reimport_is_idempotent(pipeline):
    repo = pipeline["repo"]
    out = seedflow(repo, "data", "import", str(pipeline["source"]), "--only", "logs").stdout
    assert "data/logs: 1 file" in out and "unchanged" in out
    assert sh(repo, "git", "status", "--porcelain").stdout == ""


def test_second_clone_pulls_the_inputs(pipeline):
    second = clone(pipeline["repo"], pipeline["base"] / "second", pipeline["remote"])
    dvc(second, "pull", "--with-deps", "logs_parse")
    assert (second / "data/logs/BGL_2k.log").read_text() == bgl_lines()
    assert (second / "results/logs/parsed/bgl_2k.parquet").is_file()
    assert stage_status(second, "logs_parse") == {}


def test_without_data_repro_and_import_fail_in_one_line(pipeline):
    bare = clone(pipeline["repo"], pipeline["base"] / "bare", pipeline["base"] / "empty-remote")
    result = dvc(bare, "repro", "logs_parse", check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert result.returncode != 0 and len(errors) == 1 and "data/logs" in errors[0], result.stderr
    result = seedflow(bare, "data", "import", check=False)  # ../shared/datasets does not exist beside it
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: data source ") and "dvc pull" in lines[0]


def test_bad_only_names_the_folders(pipeline):
    result = seedflow(pipeline["repo"], "data", "import", str(pipeline["source"]), "--only", "logs,nope", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: data source {pipeline['source']} has no folder nope (from --only); "
        "choose among cloud, energy, eval, load, logs, text"]


def test_code_changes_mark_stages_changed_and_bytecode_does_not(pipeline):
    work = clone(pipeline["repo"], pipeline["base"] / "code", pipeline["remote"])
    dvc(work, "pull", "--with-deps", "logs_parse", "data/text.dvc", "data/eval.dvc")
    for stage in ["tokenize", *LLM_STAGES]:  # stand-in outputs, so DVC records the stages without running them
        for out in stage_outs(work, stage):
            path = work / out
            path.parent.mkdir(parents=True, exist_ok=True)
            if out.endswith((".json", ".csv", ".md")):
                path.write_text("{}" if out.endswith(".json") else "step,train_loss\n0,1\n")
            else:
                path.mkdir(exist_ok=True)
                (path / "part").write_text(stage)
    dvc(work, "commit", "--force", "tokenize", *LLM_STAGES)
    assert stage_status(work, "logs_parse", *LLM_STAGES) == {}
    for folder in ("tasks/llm", "tasks/logs", "flows"):
        (work / folder / "__pycache__").mkdir(exist_ok=True)
        (work / folder / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"\0")
    assert stage_status(work, "logs_parse", *LLM_STAGES) == {}
    with (work / "tasks/llm/model/optim.py").open("a") as handle:
        handle.write("# touched\n")
    with (work / "tasks/logs/parsing.py").open("a") as handle:
        handle.write("# touched\n")
    status = stage_status(work, "logs_parse", *LLM_STAGES)
    assert sorted(status) == sorted(["logs_parse", *LLM_STAGES])
    for stage in LLM_STAGES:
        assert {"changed deps": {"tasks/llm": "modified"}} in status[stage]
    assert {"changed deps": {"tasks/logs": "modified"}} in status["logs_parse"]


def test_experiment_in_a_temp_copy_keeps_its_metrics(pipeline, tmp_path):
    """`dvc exp run --temp -S` finds data/ in its copy and runs the copy's params; `dvc exp show` has its metrics."""
    work = clone(pipeline["repo"], pipeline["base"] / "exp", pipeline["remote"])
    dvc(work, "pull", "data/text.dvc")
    env = {**_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}  # the copy is removed afterwards
    sh(work, sys.executable, "-m", "dvc", "exp", "run", "--temp", "tokenize",
       "-S", "llm.tokenizer.vocab_size=300", "-S", "llm.tokenizer.doc_chars=400", env=env)
    rows = json.loads(dvc(work, "exp", "show", "--json").stdout)
    exps = [rev for row in rows for exp in row.get("experiments") or [] for rev in exp["revs"]]
    assert len(exps) == 1 and not exps[0].get("error"), exps
    data = exps[0]["data"]
    assert data["params"]["params.yaml"]["data"]["llm"]["tokenizer"]["vocab_size"] == 300
    assert data["metrics"]["results/llm/tokenize_metrics.json"]["data"]["vocab_size"] == 300


def test_committed_metrics_and_ignored_outputs():
    """Metrics and plot tables (cache: false) are committed so experiments and commits compare them;
    cached outputs stay out of git; no stage reads outside the repository."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    committed, cached = [], []
    for stage in spec["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path, opts = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
                (committed if (opts or {}).get("cache", True) is False else cached).append(path)
        for dep in stage["deps"]:
            assert not dep.startswith(("/", "..", "~")), dep
    ignored = set(sh(ROOT, "git", "check-ignore", "--no-index", *committed, *cached, check=False).stdout.split())
    assert not ignored & set(committed)
    assert set(cached) <= ignored
