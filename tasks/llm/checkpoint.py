"""Checkpoints: a folder with weights (safetensors), optimizer / trainer states (torch) and meta.json.

    <dir>/model.safetensors   fp32 weights, loadable without running any pickle
    <dir>/meta.json           model config, step, tokenizer path, anything the stage adds
    <dir>/<name>.pt           optimizer and trainer states (one file per rank / outer optimizer)

A run folder keeps `checkpoints/step_NNNNNN/` plus `checkpoints/LATEST` naming the newest
complete one, and `model/` for the final weights; `resolve_checkpoint` accepts any of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tasks.common.atomic import atomic_path, write_json, write_text
from tasks.llm.model import GPT, GPTConfig


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
    return torch.load(path, map_location="cpu", weights_only=False)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from itself, a run folder (its `model/` or latest checkpoint) or `checkpoints/`."""
    path = Path(path).resolve()
    for candidate in (path, path / "model"):
        if (candidate / "meta.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    for root in (path, path / "checkpoints"):
        latest = latest_checkpoint(root)
        if latest is not None:
            return latest
    raise FileNotFoundError(f"no checkpoint at {path} (expected model.safetensors + meta.json, "
                            "a run folder with model/ or checkpoints/LATEST)")


def latest_checkpoint(root: str | Path) -> Path | None:
    pointer = Path(root) / "LATEST"
    if not pointer.is_file():
        return None
    folder = Path(root) / pointer.read_text().strip()
    return folder if (folder / "meta.json").is_file() else None


def mark_latest(root: str | Path, folder: Path, keep: int = 2) -> None:
    """Point LATEST at `folder` and delete all but the `keep` newest step folders."""
    write_text(Path(root) / "LATEST", folder.name + "\n")
    steps = sorted(p for p in Path(root).glob("step_*") if p.is_dir())
    for old in steps[:-keep]:
        for f in old.iterdir():
            f.unlink()
        old.rmdir()


def read_meta(folder: str | Path) -> dict:
    return json.loads((resolve_checkpoint(folder) / "meta.json").read_text())


def load_model(folder: str | Path) -> tuple[GPT, dict]:
    """The GPT stored in a checkpoint (fp32, eval mode) and its meta."""
    folder = resolve_checkpoint(folder)
    meta = json.loads((folder / "meta.json").read_text())
    model = GPT(GPTConfig(**meta["model_config"]))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval(), meta


def load_weights(model: GPT, folder: str | Path) -> None:
    model.load_state_dict(load_file(str(resolve_checkpoint(folder) / "model.safetensors")))
