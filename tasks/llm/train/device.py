"""Where training runs: `device: auto | cpu | cuda`, resolved once in the driver before any worker starts.

`auto` picks CUDA when the driver sees a GPU or the Ray cluster it is attached to has one; `cuda`
without either is a one-line error. On CUDA, workers ask Ray for a GPU each, a site's workers
all-reduce over NCCL, and `precision: auto` means bf16 autocast where the GPU supports it.
"""

from __future__ import annotations

import torch

from tasks.common.errors import InputError


def cluster_gpus() -> float:
    """GPUs of the Ray cluster this process is attached to (0 when Ray is not running)."""
    import ray

    return ray.cluster_resources().get("GPU", 0.0) if ray.is_initialized() else 0.0


def resolve_device(requested: str) -> str:
    if requested == "cpu":
        return "cpu"
    found = torch.cuda.is_available() or cluster_gpus() > 0
    if requested == "cuda" and not found:
        raise InputError("device: cuda, but no GPU is visible here (torch.cuda.is_available() is False and the "
                         "Ray cluster has no GPU); use --set device=cpu, or device=auto to use a GPU when present")
    return "cuda" if found else "cpu"


def dist_backend(device: str) -> str:
    return "nccl" if device == "cuda" else "gloo"
