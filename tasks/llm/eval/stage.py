"""The `eval` stage: one checkpoint -> bits per byte + every configured task's score.

`evaluate_checkpoint` is pure (no tracking) so the study can call it per stage and arm;
`write_eval_outputs` writes the DVC metrics (`metrics.json`) and a Markdown table atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.common.atomic import write_json, write_text
from tasks.common.paths import project_root
from tasks.common.precision import hardware_tags, resolve_precision
from tasks.common.model_registry import is_model_uri
from tasks.llm.train.checkpoint import load_model
from tasks.llm.config import EvalConfig
from tasks.llm.eval.engine import Engine
from tasks.llm.eval.evaluate import bpb_on_shards, evaluate_task
from tasks.llm.data.tokenizer import Tokenizer


def _absolute(path: str) -> str:
    """Relative to the project root; a registered model URI (`models:/...`) stays as it is."""
    return str(path if is_model_uri(path) or Path(path).is_absolute() else project_root() / path)


def load_for_inference(checkpoint: str) -> tuple[Any, Tokenizer, dict]:
    """Model (eval mode), its tokenizer (path recorded in the checkpoint) and the checkpoint meta."""
    model, meta = load_model(_absolute(checkpoint))
    tokenizer_path = meta.get("tokenizer") or ""
    if not tokenizer_path or not Path(tokenizer_path).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} names tokenizer {tokenizer_path!r}, which does not exist")
    return model, Tokenizer.load(tokenizer_path), meta


def build_eval_tasks(cfg: EvalConfig, data_dir: str | None = None) -> dict[str, Any]:
    from tasks.llm.data.datasets import build_task

    tasks = {}
    for name, options in cfg.tasks.items():
        options = dict(options or {})
        if name == "humaneval":
            options.setdefault("timeout_s", cfg.humaneval_timeout_s)
        tasks[name] = build_task(name, cfg.split, data_dir, **options)
    return tasks


def evaluate_checkpoint(cfg: EvalConfig, checkpoint: str | None = None, data_dir: str | None = None,
                        show: int = 0, tasks: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"checkpoint", "bpb", "tasks": {name: {accuracy, n, chance, seconds}}} for one checkpoint."""
    checkpoint = checkpoint or cfg.checkpoint
    model, tokenizer, meta = load_for_inference(checkpoint)
    tasks = tasks if tasks is not None else build_eval_tasks(cfg, data_dir)
    precision = resolve_precision(cfg.precision)
    autocast = precision == "bf16"
    result: dict[str, Any] = {"checkpoint": _absolute(checkpoint), "stage": meta.get("stage", ""),
                              "mode": meta.get("mode", ""), "precision": precision, "bpb": None, "tasks": {}}
    if cfg.bpb_tokens:
        result["bpb"] = bpb_on_shards(model, _absolute(cfg.tokens_dir), model.config.sequence_len, cfg.bpb_tokens,
                                      cfg.batch_size, autocast)
    engine = Engine(model, tokenizer, autocast=autocast)
    for name, task in tasks.items():
        if show:
            print(f"[eval] {name}", flush=True)
        result["tasks"][name] = evaluate_task(
            model, tokenizer, task, engine, max_examples=cfg.max_examples, batch_size=cfg.batch_size,
            autocast=autocast, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
            top_k=cfg.top_k or None, seed=cfg.seed, show=show)
    return result


def flat_metrics(result: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """`bpb` and `<task>_accuracy` as one flat dict of numbers (DVC metrics, MLflow metrics)."""
    out = {} if result.get("bpb") is None else {f"{prefix}bpb": float(result["bpb"])}
    for name, scores in result["tasks"].items():
        out[f"{prefix}{name}_accuracy"] = float(scores["accuracy"])
    return out


def markdown_table(result: dict[str, Any]) -> str:
    bpb = "n/a" if result.get("bpb") is None else f"{result['bpb']:.4f}"
    lines = [f"# Evaluation of `{result['checkpoint']}`", "", f"bits per byte (val): {bpb}", "",
             "| task | accuracy | chance | examples | seconds |", "|---|---|---|---|---|"]
    for name, s in result["tasks"].items():
        lines.append(f"| {name} | {s['accuracy']:.3f} | {s['chance']:.3f} | {s['n']} | {s['seconds']} |")
    return "\n".join(lines) + "\n"


def write_eval_outputs(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    out = Path(_absolute(str(out_dir)))
    paths = {"metrics": out / "metrics.json", "report": out / "report.md", "details": out / "eval.json"}
    write_json(paths["details"], result)
    write_text(paths["report"], markdown_table(result))
    write_json(paths["metrics"], flat_metrics(result))
    return paths


def run_eval(cfg: EvalConfig, data_dir: str | None = None, show: int = 0) -> dict[str, Any]:
    """The stage: evaluate, write outputs, log one MLflow run in `cfg.experiment`."""
    return record_eval(evaluate_checkpoint(cfg, data_dir=data_dir, show=show), cfg)


def _short_name(checkpoint: str) -> str:
    """`sft` for a folder, `seedflow-llm-sft-3` for `models:/seedflow-llm-sft/3`."""
    return checkpoint.removeprefix("models:/").replace("/", "-") if is_model_uri(checkpoint) else Path(checkpoint).name


def record_eval(result: dict[str, Any], cfg: EvalConfig) -> dict[str, Any]:
    """Write the outputs of an evaluation and log them as one MLflow run in `cfg.experiment`."""
    import mlflow

    from tasks.common.tracking import use_experiment

    paths = write_eval_outputs(result, cfg.out_dir)
    use_experiment(cfg.experiment)
    with mlflow.start_run(run_name=f"eval-{_short_name(result['checkpoint'])}") as run:
        mlflow.log_params({"checkpoint": result["checkpoint"], "max_examples": cfg.max_examples,
                           "tasks": ",".join(cfg.tasks), "precision": result["precision"]})
        mlflow.set_tags(hardware_tags())
        mlflow.log_metrics(flat_metrics(result))
        mlflow.log_artifact(str(paths["report"]))
        mlflow.log_artifact(str(paths["details"]))
    return {**result, "mlflow_run_id": run.info.run_id, "report": str(paths["report"])}
