"""The LLM stage flows end to end: real token shards, real Prefect server, Ray workers, MLflow; what a
run shows in the Prefect UI (its form's fields, its log, its refusals) read back from the API."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest

TINY = {"depth": 1, "sequence_len": 32, "device_batch_size": 4, "threads_per_worker": 1, "eval_every": 0,
        "eval_tokens": 256, "checkpoint_every": 0, "compile": False}


def write_tokens(tmp_path):
    from tasks.llm.data.shards import write_shards
    from tasks.llm.data.tokenizer import Tokenizer

    docs = [f"line {i}: to be or not to be, that is the question. " * 4 for i in range(300)]
    write_shards(docs, Tokenizer.train(docs, vocab_size=320), tmp_path / "tokens", val_fraction=0.1)
    return tmp_path / "tokens"


def run_log(state) -> list[str]:
    """The messages of a finished flow run's log, as the UI shows them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from flows.runtime import flush_run_logs

    flush_run_logs()
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
    return [log.message for log in logs]


def test_llm_pretrain_flow_diloco_on_shards(tmp_path, monkeypatch, mlflow_store, prefect_server):
    import mlflow

    from flows.llm.pretrain import llm_pretrain

    tokens = write_tokens(tmp_path)
    state = llm_pretrain(overrides={
        "tokens_dir": str(tokens), "out_dir": str(tmp_path / "run"), "mode": "diloco", "workers": 2,
        "depth": 1, "sequence_len": 32, "device_batch_size": 4, "steps": 20, "diloco.inner_steps": 10,
        "threads_per_worker": 1, "eval_every": 10, "eval_tokens": 256, "checkpoint_every": 10, "compile": False,
        "experiment": "llm-flow-test"}, return_state=True)
    summary = state.result()
    assert summary["sync_rounds"] == 2 and summary["val_bpb"] > 0
    assert summary["comm_bytes_per_worker"] == (2 + 1) * 4 * summary["n_params"]  # 2 pseudo-gradients up, 1 update down
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    runs = mlflow.search_runs(experiment_names=["llm-flow-test"])
    assert runs.loc[0, "tags.mode"] == "diloco" and runs.loc[0, "metrics.sync_rounds"] == 2

    progress = (tmp_path / "run" / "progress.log").read_text().splitlines()
    shown = [line for line in run_log(state) if line.startswith("[pretrain")]
    assert shown and len(shown) == len(set(shown)) and set(shown) <= set(progress)  # once each: relayed, not printed too


def test_midtrain_and_sft_show_their_own_typed_fields():
    from flows.llm.chat_stages import llm_midtrain, llm_sft
    from flows.llm.pretrain import llm_pretrain

    fields = {f.name: f.parameters.model_dump()["properties"] for f in (llm_pretrain, llm_midtrain, llm_sft)}
    assert fields["llm_midtrain"]["init_from"]["default"] == "results/llm/pretrain"
    assert fields["llm_sft"]["init_from"]["default"] == "results/llm/midtrain"
    assert "llm.sft" in fields["llm_sft"]["overrides"]["description"]
    for props in fields.values():
        assert props["sequence_len"]["type"] == "integer" and props["sequence_len"]["default"] == 256
        assert {props[k]["type"] for k in ("resume", "overwrite")} == {"boolean"}
        assert props["resume"]["default"] is False and props["overwrite"]["default"] is False
    assert llm_midtrain.fn.__module__ == llm_sft.fn.__module__ == "flows.llm.chat_stages"


def seedflow(monkeypatch, *args: str) -> tuple[int, str]:
    """`seedflow ARGS` through the entry point, in this process: exit code and stderr."""
    from flows.cli import run

    monkeypatch.setattr(sys, "argv", ["seedflow", *args])
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            run()
        except SystemExit as exited:
            return exited.code or 0, err.getvalue()
    return 0, err.getvalue()


def test_a_command_checks_once_and_a_flow_run_names_its_own_parameters(tmp_path, monkeypatch, mlflow_store,
                                                                        prefect_server):
    import mlflow

    from flows.llm.chat_stages import llm_midtrain
    from flows.llm.pretrain import llm_pretrain
    from tasks.llm import preflight
    from tasks.llm.train.checkpoint import CheckpointError

    calls = []
    check = preflight.check_pretrain
    monkeypatch.setattr(preflight, "check_pretrain", lambda *a, **k: (calls.append(1), check(*a, **k)))
    tokens = write_tokens(tmp_path)
    pretrain = {**TINY, "tokens_dir": str(tokens), "out_dir": str(tmp_path / "pretrain"), "steps": 3,
                "experiment": "llm-once-test"}
    sets = [arg for k, v in pretrain.items() for arg in ("--set", f"{k}={v}")]
    code, err = seedflow(monkeypatch, "llm", "pretrain", "--mode", "single", *sets)
    assert code == 0 and calls == [1], err[-2000:]  # the command checked; its flow did not again

    with pytest.raises(CheckpointError) as refused:  # pressing Run again: the flow checks by itself
        llm_pretrain(mode="single", overrides=pretrain)
    assert calls == [1, 1] and "already holds a run" in str(refused.value)
    assert "set the parameter resume" in str(refused.value) and "--resume" not in str(refused.value)
    code, err = seedflow(monkeypatch, "llm", "pretrain", "--mode", "single", *sets)
    assert code == 2 and "pass --resume to continue it, --overwrite to replace it" in err

    chat = {**TINY, "out_dir": str(tmp_path / "midtrain"), "experiment": "llm-once-test",
            "train_tasks": {"addition": 1.0}, "val_tasks": {"addition": 1.0},
            "task_options": {"addition": {"size": 40, "max_digits": 1}}}
    state = llm_midtrain(mode="single", steps=2, init_from=str(tmp_path / "pretrain"), overrides=chat, return_state=True)
    run = mlflow.get_run(state.result()["mlflow_run_id"])
    assert run.data.params["depth"] == "1" and "-d1-" in run.info.run_name  # the checkpoint's depth, not params.yaml's 4
    assert any(line.startswith("llm_midtrain: mode=single workers=1 depth=1 ") for line in run_log(state))
