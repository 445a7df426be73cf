"""Matmul peaks measured on this machine, the denominators of model FLOPs utilisation (MFU).

A constant would lie on a shared, throttled or different CPU; measuring a square matmul in the
same process, with the same threads, says what this run could have reached. It is measured once
per process for the dtype in use (a bf16 peak on a CPU that emulates bf16 costs seconds).
"""

from __future__ import annotations

import time
import warnings

import torch

_PEAKS: dict[tuple, float] = {}


def _measure(dtype: torch.dtype, n: int, min_seconds: float, device: str) -> float:
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    best, total, start = float("inf"), 0.0, time.perf_counter()
    while total < min_seconds:
        t0 = time.perf_counter()
        a @ b
        sync()
        dt = time.perf_counter() - t0
        best, total = min(best, dt), time.perf_counter() - start
    return 2 * n**3 / best


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 1024, min_seconds: float = 0.3, fresh: bool = False,
                device: str = "cpu") -> float:
    """FLOP/s of an n x n x n matmul in `dtype` on `device` with the current torch threads (best of the
    timed runs; n 4096 on a GPU). Cached per (dtype, n, threads, device); `fresh` measures again and
    keeps the higher figure.
    """
    n = max(n, 4096) if device == "cuda" else n
    key = (dtype, n, torch.get_num_threads(), device)
    if fresh or key not in _PEAKS:
        _PEAKS[key] = max(_PEAKS.get(key, 0.0), _measure(dtype, n, min_seconds, device))
    return _PEAKS[key]


def device_name(device: str) -> str:
    """What the figures were measured on: the GPU's name, or "cpu" (the CPU model is reported beside it)."""
    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


def utilisation(achieved_flops: float, dtype: torch.dtype, device: str = "cpu", n: int = 1024) -> tuple[float, float]:
    """(MFU, peak) for a measured rate. A run cannot beat the peak: if it seems to, the peak was
    taken under contention, so it is measured again; a figure still above 1 is capped and said."""
    peak = matmul_peak(dtype, n, device=device)
    if achieved_flops > peak:
        peak = matmul_peak(dtype, n, fresh=True, device=device)
    if achieved_flops > peak:
        warnings.warn(f"achieved {achieved_flops / 1e9:.1f} GFLOP/s exceeds the measured {dtype} matmul peak "
                      f"{peak / 1e9:.1f} GFLOP/s (a loaded machine?); MFU capped at 1", stacklevel=2)
        return 1.0, peak
    return (achieved_flops / peak if peak else 0.0), peak
