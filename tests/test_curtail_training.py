"""Curtailment-aware training on real Ray sites, through `seedflow llm curtail` as the README shows it:
the budget stops it with a checkpoint, and `--resume --set budget.carbon_kg=10` finishes it."""

from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stderr, redirect_stdout

from tasks.common.paths import data_dir
from tasks.llm.train.checkpoint import resume_point
from tasks.llm.curtail.config import CurtailConfig
from tasks.llm.curtail.run import prepare
from tasks.llm.curtail.traces import site_traces

SETTINGS = {"target_site_steps": 40, "step_s": 300.0, "threshold": 330.0, "start_s": 0.0}
TINY = {"depth": 1, "sequence_len": 32, "device_batch_size": 4, "eval_every": 0, "eval_tokens": 256, "log_every": 5,
        "checkpoint_every": 0, "threads_per_worker": 1, "precision": "fp32", "compile": False}


def curtail_cli(monkeypatch, *args: str) -> dict:
    """`seedflow llm curtail ARGS` through the entry point, in this process; its JSON summary."""
    from flows.cli import run

    monkeypatch.setattr(sys, "argv", ["seedflow", "llm", "curtail", *args])
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            run()
        except SystemExit as exited:
            assert not exited.code, err.getvalue()[-3000:]
    return json.loads(out.getvalue()[out.getvalue().index("{"):])


def test_a_budget_stop_leaves_a_checkpoint_that_resume_with_a_larger_budget_finishes(tmp_path, monkeypatch,
                                                                                      mlflow_store, prefect_server):
    import mlflow

    from tasks.llm.data.shards import write_shards
    from tasks.llm.data.tokenizer import Tokenizer

    docs = [f"line {i}: to be or not to be, that is the question. " * 4 for i in range(300)]
    write_shards(docs, Tokenizer.train(docs, vocab_size=320), tmp_path / "tokens", val_fraction=0.1)
    traces = site_traces(CurtailConfig(**SETTINGS), data_dir())  # the shared MCI trace, else generated ones
    half_kg = float(prepare(CurtailConfig(**SETTINGS), traces).accounting.per_round()["kg_co2"].sum()) / 2
    common = [f"{k}={v}" for k, v in SETTINGS.items()] + [f"pretrain.{k}={v}" for k, v in TINY.items()] + [
        f"pretrain.tokens_dir={tmp_path / 'tokens'}", f"out_dir={tmp_path / 'run'}", "experiment=llm-curtail-test"]
    sets = [arg for s in common for arg in ("--set", s)]

    stopped = curtail_cli(monkeypatch, *sets, "--set", f"budget.carbon_kg={half_kg}")
    figures = json.loads((tmp_path / "run" / "curtail.json").read_text())
    assert stopped["budget_stop"] and stopped["kg_co2"] <= half_kg and 0 < figures["site_steps"] < 40
    assert stopped["val_bpb"] is not None
    folder, notes = resume_point(tmp_path / "run" / "checkpoints")
    assert folder is not None and not notes  # intact
    run = mlflow.get_run(stopped["mlflow_run_id"])
    assert json.loads(run.data.tags["budget"])["stopped"] is True
    assert run.data.metrics["kg_co2"] == stopped["kg_co2"]
    artifacts = {f.path for f in mlflow.tracking.MlflowClient().list_artifacts(stopped["mlflow_run_id"])}
    assert {"timeline.png", "bpb_vs_carbon.png", "membership.png", "schedule.json", "energy.csv"} <= artifacts

    resumed = curtail_cli(monkeypatch, "--resume", *sets, "--set", "budget.carbon_kg=10")  # the README's command
    assert not resumed["budget_stop"] and json.loads((tmp_path / "run" / "curtail.json").read_text())["site_steps"] == 40
    progress = (tmp_path / "run" / "progress.log").read_text()
    assert "[curtail] 40 site-steps asked, 40 scheduled in " in progress  # the step counts below are model steps
    assert resumed["mlflow_run_id"] == stopped["mlflow_run_id"]
    history = mlflow.tracking.MlflowClient().get_metric_history(resumed["mlflow_run_id"], "train_loss")
    assert len({m.step for m in history}) == len(history)  # the resumed run went on from the stop, not from 0
