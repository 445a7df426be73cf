"""Every deployment runs from the Prefect UI's path: `seedflow serve` against a real server, each
flow triggered through the API with tiny parameters, each run COMPLETED; the study's report card
and the cloud flow's outputs (2 jobs on Ray) are checked end to end here too, and the SFT run's
registered model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tiny_runs(tmp: Path) -> list[tuple[str, dict]]:
    """(deployment, parameters) in dependency order: tokens -> curtail, pretrain -> midtrain -> sft -> eval."""
    train = {"sequence_len": 64, "device_batch_size": 2, "eval_every": 0, "eval_tokens": 256, "checkpoint_every": 0,
             "compile": False, "threads_per_worker": 1}
    chat = {**train, "train_tasks": {"addition": 1.0}, "val_tasks": {"addition": 1.0},
            "task_options": {"addition": {"size": 40, "max_digits": 1}}}
    evaluation = {"tokens_dir": str(tmp / "tokens"), "bpb_tokens": 256, "tasks": {"addition": {"size": 4, "max_digits": 1}},
                  "max_new_tokens": 4}
    return [
        ("forecast/forecast-local", {"datasets": ["taxi"], "rates": ["1h"], "models": ["last_observed"],
                                     "overrides": {"out_dir": str(tmp / "forecast")}}),
        ("logs/logs-local", {"run": ["bgl_2k"], "window_sizes": [1], "models": ["pca"],
                             "overrides": {"out_dir": str(tmp / "logs")}}),
        ("cloud/cloud-local", {"workloads": ["spark/join/huge", "hadoop/terasort/bigdata"], "percentiles": [50],
                               "overrides": {"repetitions": 1, "max_runs": 4, "karasu.support": "same_workload",
                                             "out_dir": str(tmp / "cloud"), "experiment": "cloud-test"}}),
        ("llm_tokenize/llm_tokenize-local", {"vocab_size": 300, "overrides": {"max_chars": 50000, "out_dir": str(tmp / "tokens")}}),
        ("llm_curtail/llm_curtail-local", {"target_site_steps": 12, "overrides": {
            "step_s": 300.0, "out_dir": str(tmp / "curtail"),
            "pretrain": {**train, "depth": 1, "tokens_dir": str(tmp / "tokens"), "eval_every": 0}}}),
        ("llm_pretrain/llm_pretrain-local", {"mode": "single", "steps": 3, "depth": 1,
                                             "overrides": {**train, "tokens_dir": str(tmp / "tokens"),
                                                           "out_dir": str(tmp / "pretrain")}}),
        ("llm_midtrain/llm_midtrain-local", {"mode": "single", "steps": 2, "init_from": str(tmp / "pretrain"),
                                             "overrides": {**chat, "out_dir": str(tmp / "midtrain")}}),
        ("llm_sft/llm_sft-local", {"mode": "single", "steps": 2, "init_from": str(tmp / "midtrain"),
                                   "overrides": {**chat, "out_dir": str(tmp / "sft")}}),
        ("llm_eval/llm_eval-local", {"checkpoint": str(tmp / "sft"), "max_examples": 2,
                                     "overrides": {**evaluation, "out_dir": str(tmp / "eval")}}),
        ("llm_study/llm_study-local", {"workers": 2, "overrides": tiny_study(tmp, train, chat, evaluation)}),
    ]


def tiny_study(tmp: Path, train: dict, chat: dict, evaluation: dict) -> dict:
    """Two arms that share their DiLoCo pretraining and differ from midtraining on; DiLoCo syncs every 2
    of 4 steps. It runs beside the chain, so it registers no models (the chain's stages register theirs)."""
    steps = {"steps": 4, "diloco.inner_steps": 2, "log_every": 2, "register_model": False}
    return {"out_dir": str(tmp / "study"), "arms": [["diloco"] * 3, ["diloco", "ddp", "ddp"]],
            "pretrain": {**train, **steps, "depth": 1, "tokens_dir": str(tmp / "tokens")},
            "midtrain": {**chat, **steps}, "sft": {**chat, **steps},
            "eval": {**evaluation, "max_examples": 3, "tasks": {"addition": {"size": 3, "max_digits": 1}, "spelling": {"size": 3}}}}


def check_study(study: Path, mlflow_store: str) -> None:
    """The report card: every arm and stage scored, DiLoCo communicating less, shared stages run once."""
    import mlflow

    numbers = json.loads((study / "metrics.json").read_text())
    assert set(numbers) == {"diloco-diloco-diloco", "diloco-ddp-ddp"}
    for arm, row in numbers.items():
        for stage, mode in zip(("pretrain", "midtrain", "sft"), arm.split("-")):
            assert row[stage]["mode"] == mode and row[stage]["bpb"] > 0 and row[stage]["comm_bytes_per_worker"] > 0
            assert 0 <= row[stage]["addition"] <= 1 and 0 <= row[stage]["spelling"] <= 1
    ddp, diloco = numbers["diloco-ddp-ddp"]["sft"], numbers["diloco-diloco-diloco"]["sft"]
    assert diloco["sync_rounds"] < ddp["sync_rounds"] and diloco["comm_bytes_per_worker"] < ddp["comm_bytes_per_worker"]
    assert numbers["diloco-ddp-ddp"]["pretrain"] == numbers["diloco-diloco-diloco"]["pretrain"]  # shared, run once
    assert "| diloco-ddp-ddp | sft | ddp |" in (study / "report.md").read_text()
    mlflow.set_tracking_uri(mlflow_store)
    runs = mlflow.search_runs(experiment_names=["llm-study"])
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    assert len(parents) == 2 and parents["metrics.sft_bpb"].notna().all()
    assert len(runs) - len(parents) == 5  # 3 stage runs, + 2 for diloco-ddp-ddp (its pretrain is shared)


def check_cloud(out_dir: Path, mlflow_store: str) -> None:
    """The cloud flow on 2 jobs: every method's curve, the searches table, the figure, MLflow runs."""
    import mlflow
    import pandas as pd

    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"random", "cherrypick", "karasu"} and metrics["hardware"]["cpu"]
    for method, stats in metrics["methods"].items():  # the summary is what the searches found, undefined until feasible
        mine = pd.read_csv(out_dir / "searches.csv").query("method == @method")
        curves = mine["norm_cost"].map(json.loads)
        found = [[v for v in at_k if v is not None] for at_k in zip(*curves)]
        assert len(found) == 4 and all(v >= 1.0 for at_k in found for v in at_k)
        assert (curves.str[-1].notna() == (mine["feasible_runs"] > 0)).all()  # defined once a feasible run is found
        assert stats["feasible_share_at"] == pytest.approx([len(at_k) / len(mine) for at_k in found], abs=1e-4)
        medians = [pytest.approx(pd.Series(at_k).median(), abs=1e-4) if at_k else None for at_k in found]
        assert stats["median_norm_cost_at"] == medians  # over the searches that have a feasible run
    searches = pd.read_csv(out_dir / "searches.csv")
    assert len(searches) == 6 and (searches["runs"] == 4).all()
    assert (out_dir / "plots" / "norm_cost.png").stat().st_size > 0
    mlflow.set_tracking_uri(mlflow_store)
    runs = mlflow.search_runs(experiment_names=["cloud-test"])
    [parent] = runs[runs["tags.mlflow.parentRunId"].isna()]["run_id"]
    children = runs[runs["tags.mlflow.parentRunId"] == parent]
    assert len(children) == 6 and set(children["tags.method"]) == {"random", "cherrypick", "karasu"}
    history = mlflow.MlflowClient().get_metric_history(parent, "karasu.norm_cost")
    assert [m.step for m in history] == [1, 2, 3, 4]


@pytest.fixture()
def served(prefect_server, mlflow_store, tmp_path):
    """`seedflow serve` in its own process, as `make serve` starts it."""
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "MLFLOW_TRACKING_URI": mlflow_store,
           "PREFECT_RUNNER_POLL_FREQUENCY": "1"}  # a run starts within a second of its trigger, not ten
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    yield tmp_path / "serve.log"
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def _wait_for_deployments(names: list[str], log: Path, timeout: float = 180) -> None:
    from prefect.client.orchestration import get_client

    deadline, found = time.monotonic() + timeout, set()
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            found = {f"{client.read_flow(d.flow_id).name}/{d.name}" for d in client.read_deployments()}
            if set(names) <= found:
                return
            time.sleep(1)
    raise AssertionError(f"deployments {sorted(set(names) - found)} never appeared; serve log:\n{log.read_text()[-3000:]}")


def _final_state(flow_run_id, timeout: float = 300):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run_id).state
            if state.is_final() or time.monotonic() > deadline:
                return state
            time.sleep(1)


def test_every_deployment_completes_from_the_api(served, tmp_path, shared_data, mlflow_store):
    from prefect.deployments import run_deployment

    runs = dict(tiny_runs(tmp_path))
    _wait_for_deployments(list(runs), served)
    beside = ["forecast/forecast-local", "logs/logs-local", "cloud/cloud-local"]  # need nothing: start at once
    after_tokens = ["llm_curtail/llm_curtail-local", "llm_study/llm_study-local"]  # need only the tokens
    chain = [name for name in runs if name not in beside + after_tokens]  # tokens -> pretrain -> ... -> eval
    started = [(name, run_deployment(name, parameters=runs[name], timeout=0)) for name in beside]
    for i, name in enumerate(chain):
        flow_run = run_deployment(name, parameters=runs[name], timeout=600, poll_interval=1)
        assert flow_run.state.is_completed(), f"{name}: {flow_run.state}\n{served.read_text()[-4000:]}"
        if i == 0:
            started += [(name, run_deployment(name, parameters=runs[name], timeout=0)) for name in after_tokens]
    for name, flow_run in started:
        state = _final_state(flow_run.id, timeout=900)
        assert state.is_completed(), f"{name}: {state}\n{served.read_text()[-4000:]}"
    assert (tmp_path / "eval" / "metrics.json").is_file()
    assert json.loads((tmp_path / "curtail" / "curtail.json").read_text())["site_steps"] == 12
    check_study(tmp_path / "study", mlflow_store)
    check_cloud(tmp_path / "cloud", mlflow_store)
    check_registered_sft(mlflow_store)


def check_registered_sft(mlflow_store: str) -> None:
    """The SFT run registered its model (test_registry checks that a registered model loads in chat)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_store)
    run = client.get_run(client.get_model_version("seedflow-llm-sft", "1").run_id)
    assert run.data.tags["stage"] == "sft" and run.info.status == "FINISHED"
