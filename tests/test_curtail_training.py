"""Curtailment-aware training on real Ray sites: the budget stops it with a checkpoint, a resume finishes it."""

from __future__ import annotations

import json

from test_sdc import byte_source, tiny_cfg

from tasks.llm.checkpoint import resume_point
from tasks.llm.curtail.config import CurtailConfig
from tasks.llm.curtail.run import prepare, run_curtail
from tasks.llm.curtail.traces import site_traces


def test_a_budget_stop_leaves_a_checkpoint_that_a_larger_budget_resumes(tmp_path, mlflow_store, ray_local):
    import mlflow

    settings = {"target_site_steps": 40, "step_s": 300.0, "threshold": 330.0, "start_s": 0.0}
    traces = site_traces(CurtailConfig(**settings), None)  # generated daily traces, one per site
    full = prepare(CurtailConfig(**settings), traces)
    half_kg = float(full.accounting.per_round()["kg_co2"].sum()) / 2
    ccfg = CurtailConfig(**settings, budget={"carbon_kg": half_kg})
    pcfg = tiny_cfg(eval_every=0, checkpoint_every=0, experiment="llm-curtail-test")
    stopped = run_curtail(ccfg, pcfg, byte_source(), traces, tmp_path / "run")
    assert stopped["budget_stop"] and stopped["kg_co2"] <= half_kg and 0 < stopped["site_steps"] < 40
    assert len(stopped["history"]) == stopped["steps"] and stopped["val_bpb"] is not None
    folder, notes = resume_point(tmp_path / "run" / "checkpoints")
    assert folder is not None and not notes  # intact
    run = mlflow.get_run(stopped["mlflow_run_id"])
    assert json.loads(run.data.tags["budget"])["stopped"] is True
    assert run.data.metrics["kg_co2"] == stopped["kg_co2"]
    artifacts = {f.path for f in mlflow.tracking.MlflowClient().list_artifacts(stopped["mlflow_run_id"])}
    assert {"timeline.png", "bpb_vs_carbon.png", "membership.png", "schedule.json", "energy.csv"} <= artifacts

    resumed = run_curtail(CurtailConfig(**settings), tiny_cfg(eval_every=0, checkpoint_every=0, resume=True,
                                                              experiment="llm-curtail-test"),
                          byte_source(), traces, tmp_path / "run")
    assert not resumed["budget_stop"] and resumed["site_steps"] == 40
    assert resumed["mlflow_run_id"] == stopped["mlflow_run_id"]
    assert resumed["history"][: len(stopped["history"])] == stopped["history"]
    assert sum(s["tokens"] for s in resumed["sites"].values()) == (40 - stopped["site_steps"]) * 4 * 32
