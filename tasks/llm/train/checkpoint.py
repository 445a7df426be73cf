"""Checkpoints: a folder with weights (safetensors), optimizer / trainer states (torch) and meta.json.

    <dir>/model.safetensors   fp32 weights, loadable without running any pickle
    <dir>/meta.json           model config, step, tokenizer path, anything the stage adds
    <dir>/<name>.pt           optimizer and trainer states (one file per rank; across sites, the outer
                              optimizer and one per site worker, listed in meta "states")

A run folder keeps `checkpoints/step_NNNNNN/` plus `checkpoints/LATEST` naming the newest
complete one, and `model/` for the final weights; `resolve_checkpoint` accepts any of them, and a
registered MLflow model version (`models:/seedflow-llm-sft/3`, logged by tasks/llm/model_registry.py), downloaded once.
Damaged files raise `CheckpointError` naming the file; `resume_point` skips damaged checkpoints
and says which, so a resume never silently starts over.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tasks.common.atomic import atomic_dir, atomic_path, write_json, write_text
from tasks.common.errors import InputError
from tasks.common.model_registry import download, is_model_uri, model_root
from tasks.llm.model.gpt import GPT, GPTConfig


class CheckpointError(InputError):
    """A checkpoint file that is missing, truncated or not what it claims to be."""


def save_checkpoint(folder: str | Path, model: GPT, optimizer_states: dict[str, Any], meta: dict) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    for name, state in optimizer_states.items():
        save_state(folder / f"{name}.pt", state)
    write_json(folder / "meta.json", {**meta, "model_config": model.config.to_dict()})
    return folder


def save_state(path: str | Path, state: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} is missing") from None
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"checkpoint file {path} is damaged ({type(exc).__name__}: {exc}); "
                              "resume from another checkpoint or retrain") from exc


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from itself, a run folder (its `model/` or latest checkpoint), `checkpoints/`,
    or a registered model version `models:/NAME/VERSION` (also `/latest`, `@alias`), downloaded once."""
    if is_model_uri(path):
        return fetch_checkpoint(str(path))
    path = Path(path).resolve()
    for candidate in (path, path / "model"):
        if (candidate / "meta.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    for root in (path, path / "checkpoints"):
        latest = latest_checkpoint(root)
        if latest is not None:
            return latest
    raise CheckpointError(f"no checkpoint at {path} (expected model.safetensors + meta.json, "
                          "a run folder with model/ or checkpoints/LATEST)")


def latest_checkpoint(root: str | Path) -> Path | None:
    pointer = Path(root) / "LATEST"
    if not pointer.is_file():
        return None
    folder = Path(root) / pointer.read_text().strip()
    return folder if (folder / "meta.json").is_file() else None


def step_folders(root: str | Path) -> list[Path]:
    """Complete-looking `step_NNNNNN` folders under `root`, newest step first."""
    found = [p for p in Path(root).glob("step_*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]), reverse=True)


def staging_folder(root: Path, step: int) -> Path:
    """Where a step's checkpoint is written before `publish_checkpoint` renames it into place."""
    return root / f".step_{step:06d}.tmp"


def publish_checkpoint(root: Path, step: int) -> Path:
    """Rename the complete staging folder to `step_NNNNNN` (replacing this run's own damaged one, which a resume
    skipped) and point LATEST at it."""
    final = root / f"step_{step:06d}"
    if final.exists():
        shutil.rmtree(final)
    staging_folder(root, step).rename(final)
    mark_latest(root, final)
    return final


def write_final_model(out_dir: str | Path, model: GPT, meta: dict) -> Path:
    """`<out_dir>/model`, the final weights the next stage starts from; an earlier one stays whole until it is
    replaced by a complete one."""
    model_dir = Path(out_dir) / "model"
    with atomic_dir(model_dir) as tmp:
        save_checkpoint(tmp, model, {}, meta)
    return model_dir


def mark_latest(root: str | Path, folder: Path, keep: int = 2) -> None:
    """Point LATEST at `folder`; delete this run's older step folders beyond the `keep` newest.

    Only steps before `folder`'s are candidates, so a checkpoint is never deleted by a run that
    has not passed it (the out-dir check keeps other runs' folders out of the way)."""
    write_text(Path(root) / "LATEST", folder.name + "\n")
    step = int(folder.name[5:])
    older = [p for p in step_folders(root) if int(p.name[5:]) < step]
    for old in older[keep - 1:]:
        for f in old.iterdir():
            f.unlink()
        old.rmdir()


def problem(folder: Path, world: int | None = None) -> str | None:
    """Why `folder` cannot be resumed from (None if it can): every file is opened and parsed."""
    try:
        meta = _meta(folder)
        load_file(str(folder / "model.safetensors"))
        ranks = world if world is not None else meta.get("world_size", 1)
        for name in meta.get("states") or [f"rank{rank}" for rank in range(ranks)]:
            load_state(folder / f"{name}.pt")
    except Exception as exc:  # any unreadable part makes the whole checkpoint unusable
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def resume_point(root: str | Path, world: int | None = None) -> tuple[Path | None, list[str]]:
    """The newest intact checkpoint under `root` (LATEST first), and a note per damaged one skipped."""
    root = Path(root)
    latest = latest_checkpoint(root)
    candidates = ([latest] if latest else []) + [p for p in step_folders(root) if p != latest]
    notes = []
    for folder in candidates:
        why = problem(folder, world)
        if why is None:
            return folder, notes
        notes.append(f"checkpoint {folder.name} is unusable ({why}); trying an older one")
    return None, notes


def _meta(folder: Path) -> dict:
    path = folder / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {folder} has no meta.json; it is incomplete") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint file {path} is damaged ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("model_config"), dict):
        raise CheckpointError(f"checkpoint file {path} does not describe a model (no model_config)")
    return meta


def read_meta(folder: str | Path) -> dict:
    return _meta(resolve_checkpoint(folder))


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / "model.safetensors"
    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError, OSError: a truncated or foreign file
        raise CheckpointError(f"checkpoint file {path} is damaged ({type(exc).__name__}: {exc}); "
                              "use another checkpoint or retrain") from exc


def load_model(folder: str | Path) -> tuple[GPT, dict]:
    """The GPT stored in a checkpoint (fp32, eval mode) and its meta."""
    folder = resolve_checkpoint(folder)
    meta = _meta(folder)
    model = GPT(GPTConfig(**meta["model_config"]))
    model.load_state_dict(_weights(folder))
    return model.eval(), meta


def load_weights(model: GPT, folder: str | Path) -> None:
    model.load_state_dict(_weights(resolve_checkpoint(folder)))


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
