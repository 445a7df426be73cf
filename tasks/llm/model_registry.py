"""Trained checkpoints as MLflow models: logged with their stage's run, registered per stage.

A logged model holds the checkpoint folder (`model.safetensors`, `meta.json`) and the tokenizer
file, so it stands alone; its pyfunc (tasks/llm/pyfunc_model.py) answers prompts through a
`ChatSession`. Fetching one back (`models:/seedflow-llm-sft/3`) is tasks/llm/train/checkpoint.py's
`resolve_checkpoint`, which points the downloaded meta's tokenizer at the bundled copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.common.errors import InputError
from tasks.common.model_registry import log_pyfunc, pins, register
from tasks.llm.train.checkpoint import load_model, read_meta

CODE = Path(__file__).with_name("pyfunc_model.py")
REQUIREMENTS = ("mlflow", "torch", "tokenizers", "safetensors", "numpy", "pandas", "pydantic")
PARAMS = {"max_tokens": 64, "temperature": 0.0, "top_k": 50, "seed": 0}  # defaults of the pyfunc's params


def registered_name(stage: str) -> str:
    return f"seedflow-llm-{stage}"


def signature():
    """Prompt strings in, completion strings out (unnamed: a list or any one-column frame); sampling as params."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    kinds = {int: "long", float: "double"}
    return ModelSignature(inputs=Schema([ColSpec("string")]), outputs=Schema([ColSpec("string")]),
                          params=ParamSchema([ParamSpec(k, kinds[type(v)], v) for k, v in PARAMS.items()]))


def log_checkpoint(run_id: str, model_dir: Path, tags: dict[str, str], register_it: bool) -> dict[str, str]:
    """Log `model_dir` as run `run_id`'s MLflow model and, if asked, a new version of seedflow-llm-<stage>."""
    tokenizer = read_meta(model_dir).get("tokenizer") or ""
    artifacts = {"checkpoint": str(model_dir), **({"tokenizer": tokenizer} if Path(tokenizer).is_file() else {})}
    info = log_pyfunc(run_id, CODE, artifacts, signature(), pins(*REQUIREMENTS), tags=tags)
    out = {"model_uri": info.model_uri}
    if register_it:
        version = register(info, registered_name(tags["stage"]), tags)
        out["registered_model"] = f"models:/{version.name}/{version.version}"
    return out


def load_bundled(artifacts: dict[str, str]) -> tuple[Any, Any]:
    """The GPT and tokenizer of a logged model's artifacts (the pyfunc's `load_context`)."""
    from tasks.llm.data.tokenizer import Tokenizer

    if "tokenizer" not in artifacts:
        raise InputError("this MLflow model was trained on bytes without a tokenizer file, so it cannot read prompts; "
                         "use a model trained on token shards (seedflow llm tokenize)")
    model, _ = load_model(artifacts["checkpoint"])
    return model, Tokenizer.load(artifacts["tokenizer"])


def complete(model, tokenizer, prompts: list[str], params: dict[str, Any] | None = None) -> list[str]:
    """One fresh single-turn chat per prompt, as `seedflow llm chat --prompt` answers it."""
    from tasks.llm.eval.chat_session import ChatSession

    p = {**PARAMS, **(params or {})}
    session = ChatSession(model, tokenizer, temperature=float(p["temperature"]), top_k=int(p["top_k"]) or None,
                          max_tokens=int(p["max_tokens"]), seed=int(p["seed"]))
    replies = []
    for prompt in prompts:
        session.clear()
        replies.append("".join(session.reply(str(prompt))))
    return replies
