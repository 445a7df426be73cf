"""Precision follows the hardware: bf16 only where it is fast, fp32 everywhere else.

On a CPU with AMX or AVX512-BF16 a bf16 matmul is several times faster than fp32; on an AVX2-only
CPU bf16 is emulated and tens of times slower. So `precision: auto` (the default) asks the machine:
CUDA with bf16 support, or a CPU whose flags name amx_bf16 / avx512_bf16, gets bf16; a CPU without
readable flags (not Linux x86) is timed once; everything else runs fp32. The answer is cached for
the process. `SEEDFLOW_FAST_BF16=0|1` forces the answer (tests, or a machine that lies).
"""

from __future__ import annotations

import functools
import os
import platform
import time
from pathlib import Path
from typing import Literal

Precision = Literal["auto", "bf16", "fp32"]
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo, or None where there is no such file."""
    try:
        return flags_in(Path("/proc/cpuinfo").read_text())
    except OSError:
        return None


def flags_in(cpuinfo: str) -> frozenset[str] | None:
    """The feature flags of a /proc/cpuinfo text (x86 `flags`, Arm `Features`); None if it names none."""
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.partition(":")[2].split())
    return None


def bf16_by_flags(flags: frozenset[str] | None, machine: str) -> bool | None:
    """On x86 the flags decide (AMX or AVX512-BF16: bf16 is native); elsewhere, or without flags,
    None: they do not tell, so the caller times it."""
    if flags is None or machine not in ("x86_64", "AMD64", "i686"):
        return None
    return any(flag in flags for flag in BF16_CPU_FLAGS)


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _timed_bf16_is_faster() -> bool:
    """A 256^3 matmul in each dtype: bf16 counts as fast only if it beats fp32 outright."""
    import torch

    def best(dtype) -> float:
        a, b = torch.randn(256, 256, dtype=dtype), torch.randn(256, 256, dtype=dtype)
        a @ b
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        return min(times)

    return best(torch.bfloat16) < best(torch.float32)


@functools.cache
def fast_bf16(device: str = "cpu") -> bool:
    """Whether bf16 matmuls are fast on `device` ("cpu" or "cuda")."""
    forced = os.environ.get("SEEDFLOW_FAST_BF16", "").strip().lower()
    if forced in ("0", "1", "true", "false", "yes", "no"):
        return forced in ("1", "true", "yes")
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    verdict = bf16_by_flags(cpu_flags(), platform.machine())
    return _timed_bf16_is_faster() if verdict is None else verdict


def resolve_precision(requested: str, device: str = "cpu") -> Literal["bf16", "fp32"]:
    """`auto` -> bf16 where it is fast, else fp32; an explicit choice is kept."""
    if requested == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    if requested not in ("bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {requested!r}")
    return requested  # type: ignore[return-value]


def torch_dtype(precision: str):
    import torch

    return torch.bfloat16 if precision == "bf16" else torch.float32


def hardware_tags() -> dict[str, str]:
    """What every MLflow run and benchmark records beside its figures."""
    tags = {"cpu": cpu_model(), "cpu_cores": str(os.cpu_count() or 1), "fast_bf16_cpu": str(fast_bf16("cpu")).lower()}
    try:
        import torch

        tags["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if torch.cuda.is_available():
            tags["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return tags
