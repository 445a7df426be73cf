"""Matmul peaks measured on this machine, the denominators of model FLOPs utilisation (MFU).

A constant would lie on a shared, throttled or different CPU; measuring a square matmul in the
same process, with the same threads, says what this run could have reached.
"""

from __future__ import annotations

import time

import torch


def matmul_peak(dtype: torch.dtype = torch.bfloat16, n: int = 1024, min_seconds: float = 0.3) -> float:
    """FLOP/s of an n x n x n matmul in `dtype` with the current torch threads (best of the timed runs)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best, total, start = float("inf"), 0.0, time.perf_counter()
    while total < min_seconds:
        t0 = time.perf_counter()
        a @ b
        dt = time.perf_counter() - t0
        best, total = min(best, dt), time.perf_counter() - start
    return 2 * n**3 / best
