"""The shared repository as a user meets it: contribute runs, then ask for the next configuration.
(The cloud flow itself runs end to end on Ray, from the Prefect API, in test_deployments.)"""

from __future__ import annotations

import io
import json
import shutil
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest

from tasks.cloud.runs import RUN_COLUMNS
from tasks.cloud.synthetic import generated_runs

ROOT = Path(__file__).resolve().parents[1]
JOB = "spark/join/huge"


def seedflow(*args: str) -> tuple[int, str, str]:
    """`seedflow ARGS` through its entry point, in this process: (exit code, stdout, stderr)."""
    from flows.cli import run

    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["seedflow", *args]
    try:
        with redirect_stdout(out), redirect_stderr(err):
            run()
        code = 0
    except SystemExit as exited:
        code = exited.code
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


@pytest.fixture()
def user(tmp_path, monkeypatch):
    """A project of its own (params.yaml), the generated runs as the user's and collaborators' runs, their prices."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.setenv("SEEDFLOW_ROOT", str(tmp_path))
    monkeypatch.delenv("SEEDFLOW_DEBUG", raising=False)
    runs, prices = generated_runs(0)
    runs["job"] = runs["framework"] + "/" + runs["workload"] + "/" + runs["datasize"]
    prices.to_csv(tmp_path / "prices.csv", index=False)
    return tmp_path, runs


def write_runs(runs: pd.DataFrame, path: Path) -> str:
    runs[RUN_COLUMNS].to_csv(path, index=False)
    return str(path)


def test_contributed_runs_guide_the_next_recommendation(shared_data, tmp_path):
    from typer.testing import CliRunner

    from flows.cloud import app

    scout = pd.read_csv(shared_data / "cloud" / "scout_multinode.csv")
    others = scout[(scout["framework"] == "spark") & (scout["workload"] != "join")]
    others = others.groupby(["workload", "datasize"]).head(10)  # what each collaborator's own search profiled
    mine = scout[(scout["workload"] == "join") & (scout["datasize"] == "huge")].head(2)
    others.to_csv(tmp_path / "others.csv", index=False)
    mine.to_csv(tmp_path / "mine.csv", index=False)
    repo = tmp_path / "repository"
    runner = CliRunner()
    added = runner.invoke(app, ["contribute", str(tmp_path / "others.csv"), "--user", "alice", "--repository", str(repo)])
    assert added.exit_code == 0, added.output
    [contribution] = repo.glob("alice-*.parquet")
    assert len(pd.read_parquet(contribution)) == len(others)

    asked = runner.invoke(app, ["optimize", "--workload", "spark/join/huge", "--max-runtime", "900",
                                "--observed", str(tmp_path / "mine.csv"), "--repository", str(repo),
                                "--set", "karasu.support=same_framework", "--set", "karasu.support_k=2"])
    assert asked.exit_code == 0, asked.output
    advice = json.loads(asked.output)
    assert advice["profiled"] == 2 and advice["collaborators_jobs"] == 4
    tried = {f"{r.nodes} x {r.vm_type}" for r in mine.itertuples()}
    assert advice["next"]["config"] not in tried and advice["next"]["expected_cost_usd"] > 0
    assert 0 <= advice["next"]["p_meets_limit"] <= 1


def test_optimize_recommends_with_none_few_and_enough_of_your_own_runs(user):
    """0 and 2 runs (collaborators' models only), 3 (in the repository: your GPs join) and 5 (--observed)."""
    folder, runs = user
    repo, prices = folder / "repository", str(folder / "prices.csv")
    mine = runs[runs["job"] == JOB].sample(5, random_state=0)
    collaborator = write_runs(runs[runs["job"] == "spark/join/bigdata"].sample(10, random_state=1), folder / "shared.csv")
    assert seedflow("cloud", "contribute", collaborator, "--user", "bob", "--repository", str(repo), "--prices", prices)[0] == 0
    ask = ["cloud", "optimize", "--workload", JOB, "--max-runtime", "600", "--repository", str(repo), "--prices", prices,
           "--set", "karasu.support=same_workload"]
    for profiled, extra in ((0, []), (2, ["--observed", write_runs(mine.head(2), folder / "two.csv")]), (3, None),
                            (5, ["--observed", write_runs(mine, folder / "five.csv")])):
        if extra is None:  # your first three runs, shared: the repository now holds them
            seedflow("cloud", "contribute", write_runs(mine.head(3), folder / "three.csv"), "--user", "me",
                     "--repository", str(repo), "--prices", prices)
            extra = []
        code, out, err = seedflow(*ask, *extra)
        assert code == 0, err
        advice = json.loads(out)
        tried = {f"{r.nodes} x {r.vm_type}" for r in mine.head(profiled).itertuples()}
        assert advice["profiled"] == profiled and advice["collaborators_jobs"] == 1
        assert advice["next"]["config"] not in tried
        if profiled:
            assert advice["next"]["expected_cost_usd"] > 0 and 0 <= advice["next"]["p_meets_limit"] <= 1


def test_a_contribution_without_runs_is_refused_and_nothing_is_written(user):
    folder, runs = user
    header_only = write_runs(runs.iloc[:0], folder / "empty.csv")
    code, out, err = seedflow("cloud", "contribute", header_only, "--user", "alice", "--repository",
                              str(folder / "repository"), "--prices", str(folder / "prices.csv"))
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("error: runs table") and "holds no runs" in line
    assert not (folder / "repository").exists()


def test_observed_runs_of_another_job_are_refused_and_a_mixed_file_says_what_it_used(user):
    folder, runs = user
    prices = str(folder / "prices.csv")
    ask = ["cloud", "optimize", "--workload", JOB, "--max-runtime", "600", "--repository", str(folder / "repository"),
           "--prices", prices]
    other = write_runs(runs[runs["job"] == "spark/lr/huge"].head(3), folder / "lr.csv")
    code, out, err = seedflow(*ask, "--observed", other)
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert f"holds no runs of {JOB} (only of spark/lr/huge)" in line

    mixed = write_runs(pd.concat([runs[runs["job"] == JOB].head(2), runs[runs["job"] == "spark/lr/huge"].head(3)]),
                       folder / "mixed.csv")
    code, out, err = seedflow(*ask, "--observed", mixed)
    assert code == 0, err
    advice = json.loads(out)
    assert advice["profiled"] == 2
    assert advice["observed"] == {"file": mixed, "runs_used": 2, "runs_of_other_jobs_ignored": {"spark/lr/huge": 3}}
