"""The shared repository as a user meets it: contribute runs, then ask for the next configuration.
(The cloud flow itself runs end to end on Ray, from the Prefect API, in test_deployments.)"""

from __future__ import annotations

import json

import pandas as pd


def test_contributed_runs_guide_the_next_recommendation(shared_data, tmp_path):
    from typer.testing import CliRunner

    from flows.cloud import app

    scout = pd.read_csv(shared_data / "cloud" / "scout_multinode.csv")
    others = scout[(scout["framework"] == "spark") & (scout["workload"] != "join")]
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
