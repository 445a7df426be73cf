"""Trained checkpoints as MLflow models: logged with their stage's run, registered per stage, fetched back.

A logged model holds the checkpoint folder (`model.safetensors`, `meta.json`) and the tokenizer
file, so it stands alone; its pyfunc (tasks/llm/pyfunc_model.py) answers prompts through a
`ChatSession`. `fetch_checkpoint("models:/seedflow-llm-sft/3")` downloads a version once and
points its meta's tokenizer at the bundled copy: meta records the training machine's path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.common.atomic import write_json
from tasks.common.errors import InputError
from tasks.common.registry import download, log_pyfunc, model_root, pins, register
from tasks.llm.checkpoint import CheckpointError, load_model, read_meta

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
    from tasks.llm.tokenizer import Tokenizer

    if "tokenizer" not in artifacts:
        raise InputError("this MLflow model was trained on bytes without a tokenizer file, so it cannot read prompts; "
                         "use a model trained on token shards (seedflow llm tokenize)")
    model, _ = load_model(artifacts["checkpoint"])
    return model, Tokenizer.load(artifacts["tokenizer"])


def complete(model, tokenizer, prompts: list[str], params: dict[str, Any] | None = None) -> list[str]:
    """One fresh single-turn chat per prompt, as `seedflow llm chat --prompt` answers it."""
    from tasks.llm.chat_session import ChatSession

    p = {**PARAMS, **(params or {})}
    session = ChatSession(model, tokenizer, temperature=float(p["temperature"]), top_k=int(p["top_k"]) or None,
                          max_tokens=int(p["max_tokens"]), seed=int(p["seed"]))
    replies = []
    for prompt in prompts:
        session.clear()
        replies.append("".join(session.reply(str(prompt))))
    return replies


def fetch_checkpoint(uri: str) -> Path:
    """The checkpoint folder of a registered model version, downloaded on first use."""
    folder = _artifacts(model_root(download(uri, finish=_bundle_tokenizer))).get("checkpoint")
    if folder is None or not (folder / "meta.json").is_file():
        raise CheckpointError(f"{uri} holds no seedflow checkpoint (no checkpoint artifact with meta.json); "
                              "register models with `seedflow llm` stages")
    return folder


def _artifacts(root: Path) -> dict[str, Path]:
    """The pyfunc artifacts listed in a model's MLmodel file, as paths inside `root`."""
    from mlflow.models import Model

    listed = Model.load(str(root)).flavors.get("python_function", {}).get("artifacts", {})
    return {key: root / entry["path"] for key, entry in listed.items()}


def _bundle_tokenizer(tmp: Path, final: Path) -> None:
    """Point the downloaded meta.json at the downloaded tokenizer, at the place it will be renamed to."""
    found = _artifacts(model_root(tmp))
    if "checkpoint" not in found or "tokenizer" not in found:
        return
    meta_path = found["checkpoint"] / "meta.json"
    meta = json.loads(meta_path.read_text())
    write_json(meta_path, {**meta, "tokenizer": str(final / found["tokenizer"].relative_to(tmp))})
