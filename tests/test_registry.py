"""Models in the MLflow registry: every stage's final model is logged and registered with a new version
per run, and `models:/NAME/VERSION` loads wherever a checkpoint folder does. Real SQLite store."""

from __future__ import annotations

import json
import pickle

import pytest

from tasks.common import model_registry
from tasks.common.errors import InputError
from tasks.common.model_registry import RegistryError
from tasks.llm.train.checkpoint import load_model, read_meta, resolve_checkpoint
from tasks.llm.data.batches import TokenStreamSource
from tasks.llm.train.run import run_training
from test_llm_train import tiny_cfg


@pytest.fixture()
def model_cache(tmp_path, monkeypatch):
    """Downloads go to this test's folder, not the checkout's .cache."""
    folder = tmp_path / "model-cache"
    monkeypatch.setattr(model_registry, "cache_root", lambda: folder)
    return folder


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    """Token shards with a real (tiny) tokenizer, so the registered model can read prompts."""
    from tasks.llm.data.shards import write_shards
    from tasks.llm.data.tokenizer import Tokenizer

    root = tmp_path_factory.mktemp("registry_tokens")
    docs = [f"What is {i} + {i + 1}? It is {2 * i + 1}. Spell the word: garden" for i in range(300)]
    write_shards(docs, Tokenizer.train(docs, vocab_size=300), root / "tokens", val_fraction=0.2)
    return root / "tokens"


def train(tokens, out, stage="pretrain", **kw):
    source = TokenStreamSource(4, 32, tokens_dir=str(tokens))
    cfg = tiny_cfg(steps=2, eval_every=0, checkpoint_every=0, **kw)
    return run_training(cfg, source, out_dir=out, stage=stage)


def versions(name: str) -> list[str]:
    from mlflow.tracking import MlflowClient

    return sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name = '{name}'"))


def test_each_run_registers_a_new_version_and_models_uri_loads(tokens, tmp_path, mlflow_store, model_cache):
    import mlflow

    first = train(tokens, tmp_path / "a")
    second = train(tokens, tmp_path / "b")
    assert (first["registered_model"], second["registered_model"]) == ("models:/seedflow-llm-pretrain/1",
                                                                       "models:/seedflow-llm-pretrain/2")
    assert versions("seedflow-llm-pretrain") == [1, 2]
    version = mlflow.MlflowClient().get_model_version("seedflow-llm-pretrain", "2")
    assert version.run_id == second["mlflow_run_id"]
    assert {k: version.tags[k] for k in ("stage", "mode", "precision")} == {"stage": "pretrain", "mode": "single",
                                                                            "precision": "fp32"}
    assert mlflow.get_run(second["mlflow_run_id"]).data.tags["registered_model"] == second["registered_model"]

    folder = resolve_checkpoint("models:/seedflow-llm-pretrain/1")
    assert folder.is_relative_to(model_cache / "seedflow-llm-pretrain" / "1")
    meta = read_meta("models:/seedflow-llm-pretrain/1")
    assert meta["mlflow_run_id"] == first["mlflow_run_id"]
    assert meta["tokenizer"].startswith(str(model_cache)) and json.loads(open(meta["tokenizer"]).read())
    model, _ = load_model("models:/seedflow-llm-pretrain/latest")
    trained, _ = load_model(second["model_dir"])
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), trained.state_dict().values()))
    assert resolve_checkpoint("models:/seedflow-llm-pretrain/1") == folder  # downloaded once, then reused


def test_chat_and_pyfunc_from_the_registry(tokens, tmp_path, mlflow_store, model_cache):
    import mlflow.pyfunc
    from typer.testing import CliRunner

    from flows.cli import build_app
    from tasks.llm.eval.chat_session import ChatSession
    from tasks.llm.preflight import check_checkpoint

    train(tokens, tmp_path / "a")
    check_checkpoint("models:/seedflow-llm-pretrain/1", "--checkpoint")
    session = ChatSession.from_checkpoint("models:/seedflow-llm-pretrain/1", temperature=0.0, max_tokens=6)
    reply = "".join(session.reply("What is 1 + 2?"))
    assert reply == session.messages[-1]["content"]

    pyfunc = mlflow.pyfunc.load_model("models:/seedflow-llm-pretrain/1")
    assert [c.type.name for c in pyfunc.metadata.signature.inputs] == ["string"]
    answers = pyfunc.predict(["What is 1 + 2?", "Spell the word: garden"], params={"max_tokens": 6})
    assert len(answers) == 2 and answers[0] == reply and all(isinstance(a, str) for a in answers)

    command = CliRunner().invoke(build_app(), ["llm", "chat", "--checkpoint", "models:/seedflow-llm-pretrain/1",
                                               "-p", "What is 1 + 2?", "--temperature", "0", "--max-tokens", "6"])
    assert command.exit_code == 0 and command.output.strip() == reply.strip(), command.output


def test_later_stage_starts_from_a_registered_model(tokens, tmp_path, mlflow_store, model_cache):
    """SFT from `models:/.../latest`: the tokenizer it renders with is the one bundled in the model."""
    import mlflow

    from tasks.llm.config import SftConfig
    from tasks.llm.train.stages import run_chat_stage

    train(tokens, tmp_path / "pre")
    cfg = SftConfig(**{**tiny_cfg(steps=2, eval_every=0, checkpoint_every=0).model_dump(), "mode": "single"},
                    train_tasks={"addition": 1.0}, val_tasks={"addition": 1.0},
                    task_options={"addition": {"size": 20, "max_digits": 1}})
    sft = run_chat_stage("sft", cfg, init_checkpoint="models:/seedflow-llm-pretrain/latest", out_dir=str(tmp_path / "sft"))
    assert sft["registered_model"] == "models:/seedflow-llm-sft/1"
    assert mlflow.get_run(sft["mlflow_run_id"]).data.tags["init_model"] == "models:/seedflow-llm-pretrain/latest"
    bundled = read_meta("models:/seedflow-llm-pretrain/1")["tokenizer"]
    assert read_meta(sft["model_dir"])["tokenizer"] == bundled and bundled.startswith(str(model_cache))


def test_register_false_and_bench_runs_register_nothing(tokens, tmp_path, mlflow_store, model_cache):
    import mlflow

    logged = train(tokens, tmp_path / "a", register_model=False)
    assert "registered_model" not in logged and logged["model_uri"].startswith("models:/m-")
    bench = train(tokens, tmp_path / "b", stage="bench")
    assert "model_uri" not in bench
    assert mlflow.MlflowClient().search_registered_models() == []


@pytest.mark.parametrize("uri, message", [
    ("models:/seedflow-llm-pretrain/7", "seedflow-llm-pretrain has version\\(s\\) 1; use one of those"),
    ("models:/seedflow-llm-sft/1", "no registered model 'seedflow-llm-sft'; registered: seedflow-llm-pretrain"),
    ("models:/seedflow-llm-pretrain@champion", "seedflow-llm-pretrain has version\\(s\\) 1"),
    ("models:/seedflow-llm-pretrain", "write models:/NAME/VERSION"),
])
def test_a_missing_model_or_version_is_one_clear_line(tokens, tmp_path, mlflow_store, model_cache, uri, message):
    train(tokens, tmp_path / "a")
    with pytest.raises(RegistryError, match=message) as caught:
        resolve_checkpoint(uri)
    assert "\n" not in str(caught.value)


def test_forecast_logs_every_model_and_registers_the_best_per_series(tmp_path, mlflow_store):
    """Two series, three models: each child run has a pyfunc model; the lowest sMAPE of each series is registered."""
    import mlflow
    import numpy as np
    import pandas as pd

    from tasks.forecast.config import ForecastConfig
    from tasks.forecast.report import log_to_mlflow, write_outputs
    from tasks.forecast.study import check_inputs, run_combo
    from test_forecast_inputs import write_series

    paths = [write_series(tmp_path / "web_1h.csv", n=240),
             write_series(tmp_path / "shop_1h.csv", n=240, values=50 + np.arange(240) % 24 + np.arange(240) * 0.1)]
    cfg = ForecastConfig(datasets=[], series_files=[str(p) for p in paths], experiment="forecast-test",
                         models=["last_observed", "last_day", "holt_winters"])
    specs = check_inputs(cfg, None)
    results = [run_combo(spec, model, cfg) for spec in specs for model in cfg.models]
    stats = write_outputs(results, tmp_path / "out")
    log_to_mlflow(results, cfg, stats, tmp_path / "out", "forecast-test")

    client = mlflow.MlflowClient()
    for series in ("web_1h", "shop_1h"):
        mine = [r for r in results if f"{r.dataset}_{r.rate}" == series]
        best = min(mine, key=lambda r: r.metrics["smape"])
        [version] = client.search_model_versions(f"name = 'seedflow-forecast-{series}'")
        assert version.tags["model"] == best.model and float(version.tags["smape"]) == pytest.approx(best.metrics["smape"], abs=1e-4)
    logged = mlflow.search_logged_models(experiment_ids=[mlflow.get_experiment_by_name("forecast-test").experiment_id],
                                         output_format="list")
    assert len(logged) == len(results)

    best = min((r for r in results if r.dataset == "web"), key=lambda r: r.metrics["smape"])
    pyfunc = mlflow.pyfunc.load_model("models:/seedflow-forecast-web_1h/1")
    y = pd.read_csv(paths[0])["messages"].to_numpy(dtype=float)
    origin = best.params["n_train"] + 5
    expected = pickle.loads(best.model_bytes).forecast(y, np.array([origin]), best.params["horizon"])[0]
    out = pyfunc.predict(pd.DataFrame({"y": y[:origin]}))
    assert list(out["step"]) == list(range(1, best.params["horizon"] + 1))
    np.testing.assert_allclose(out["forecast"], expected)
    with pytest.raises(InputError, match="at least 48 finite values of y"):
        pyfunc.predict(pd.DataFrame({"y": y[:10]}))


def test_logs_logs_every_detector_and_registers_the_best(shared_data, tmp_path, mlflow_store):
    """BGL_2k, one window, every detector: each fitted detector scores lines as in its run, loaded
    back as an MLflow model; the highest F1 is registered as seedflow-logs-bgl_2k."""
    import mlflow
    import numpy as np

    from tasks.common.config import load_config
    from tasks.logs.config import LogsConfig
    from tasks.logs.data import prepare
    from tasks.logs.evaluate import evaluate, taxonomy
    from tasks.logs.pipeline import detect, ingest_and_parse, read_parsed, weak_labels
    from tasks.logs.model_registry import lines_to_data
    from tasks.logs.report import log_to_mlflow, precision_info, write_outputs

    cfg = load_config(LogsConfig, "logs", {"run": ["bgl_2k"], "window_sizes": [0], "out_dir": str(tmp_path / "logs"),
                                           "experiment": "logs-test", "pull.epochs": 2, "pull.max_rounds": 1,
                                           "deeplog.epochs": 1})
    path, stats = ingest_and_parse(cfg.dataset("bgl_2k"), cfg, str(shared_data), tmp_path / "logs")
    parsed = read_parsed(path)
    labels = parsed["label"].fillna(0).to_numpy(np.int64)
    data = prepare(parsed.drop(columns=["label"]), weak_labels(parsed, cfg.dataset("bgl_2k"), 0, None), cfg.train_fraction)
    types = taxonomy(parsed["template_id"].to_numpy(), parsed["content"].to_numpy(), labels)
    lines = lines_to_data(parsed.assign(tokens=parsed["tokens"].map(" ".join)))
    rows, dets = [], {}
    for model in cfg.models:
        det = dets[model] = detect(model, data, cfg, labels if model == "supervised" else None)
        scores, predicted = det.fitted.score(lines)
        np.testing.assert_allclose(scores, det.scores, rtol=1e-5, err_msg=model)
        assert (predicted == det.predicted).all(), model
        rows.append({"dataset": "bgl_2k", "window_s": 0.0, **evaluate(det, labels, data.train, types), "info": det.info})
    info = precision_info(cfg)
    write_outputs(rows, {"bgl_2k": stats}, {}, tmp_path / "logs", info)
    log_to_mlflow(rows, {"bgl_2k": stats}, cfg, tmp_path / "logs", "logs-test", info)

    experiment = mlflow.get_experiment_by_name("logs-test").experiment_id
    assert len(mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")) == len(cfg.models)
    best = max(rows, key=lambda r: r["f1"])
    [version] = mlflow.MlflowClient().search_model_versions("name = 'seedflow-logs-bgl_2k'")
    assert version.tags["model"] == best["model"] and float(version.tags["f1"]) == pytest.approx(best["f1"])
    frame = parsed.assign(tokens=parsed["tokens"].map(" ".join))[["timestamp", "node", "template_id", "tokens"]]
    out = mlflow.pyfunc.load_model("models:/seedflow-logs-bgl_2k/1").predict(frame)
    assert list(out.columns) == ["score", "anomaly"]
    np.testing.assert_allclose(out["score"], dets[best["model"]].scores, rtol=1e-5)
    assert (out["anomaly"] == dets[best["model"]].predicted).all()
