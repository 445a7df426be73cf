"""Fault injection for the silent-data-corruption (SDC) study: bit flips in one matmul result.

A fault flips bits of one element of a Linear layer's output (stage `forward`) or of the gradient
flowing back into that output (stage `backward`, which corrupts an operand of both backward
matmuls). The schedule is the study's: from `start_step` each step starts an event with
probability p, and an event corrupts one element per step for a uniform 1-5 steps. A fault is
transient: it hits its step's first forward-and-backward only, so a recompute is clean, unless
`persistent` (a stuck unit: the recompute is hit too). The injector draws from its own generator
(the run's random numbers are untouched) and holds a hook only on the faulty layer while a faulty
step computes; with injection off it is never built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from tasks.common.errors import InputError
from tasks.llm.config import SdcInjectConfig

T = TypeVar("T")

# float dtype -> (integer view of the same width, exponent bits, mantissa bits)
LAYOUT = {torch.float32: (torch.int32, 8, 23), torch.bfloat16: (torch.int16, 8, 7), torch.float16: (torch.int16, 5, 10)}


def class_bits(dtype: torch.dtype, bit_class: str) -> list[int]:
    """Bit positions of a class: the sign, the top or bottom 3 exponent bits, or any mantissa bit."""
    _, e, m = LAYOUT[dtype]
    return {"sign": [e + m], "exp_high": [e + m - 1, e + m - 2, e + m - 3], "exp_low": [m, m + 1, m + 2],
            "mantissa": list(range(m))}[bit_class]


def flip_bits(t: torch.Tensor, bits: list[int]) -> torch.Tensor:
    """A copy of `t` with the given bit positions flipped in every element (through an integer view)."""
    int_dtype, e, m = LAYOUT[t.dtype]
    width = 1 + e + m
    if not bits or any(not 0 <= b < width for b in bits):
        raise InputError(f"bits {bits} must be positions 0..{width - 1} of {t.dtype}")
    mask = sum(1 << b for b in set(bits))
    if mask >= 1 << (width - 1):  # the sign bit: as a two's-complement value of the integer dtype
        mask -= 1 << width
    return (t.contiguous().view(int_dtype) ^ mask).view(t.dtype)


class Injector:
    """Corrupts matmul results on the faulty rank: `wrap` each step's forward-and-backward."""

    def __init__(self, model: nn.Module, cfg: SdcInjectConfig, dtype: torch.dtype, record: Callable[..., None]):
        self.cfg, self.dtype, self.record = cfg, dtype, record
        self.rng = np.random.default_rng(cfg.seed)
        self.layers = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
        if cfg.layer and cfg.layer not in self.layers:
            raise InputError(f"sdc.inject.layer {cfg.layer!r} is not a Linear of the model; choose from {list(self.layers)}")
        self.started, self.left, self.layer, self.bits = 0, 0, "", []

    def wrap(self, step: int, compute: Callable[[], T]) -> Callable[[], T]:
        """`compute` as this step runs it: faulty on its first call (every call if `persistent`) during an event."""
        cfg = self.cfg
        if not self.left and step >= cfg.start_step and (not cfg.max_events or self.started < cfg.max_events) \
                and self.rng.random() < cfg.p:
            self.started += 1
            self.left = int(self.rng.integers(cfg.duration[0], cfg.duration[1] + 1))
            self.layer = cfg.layer or str(self.rng.choice(list(self.layers)))
            self.bits = list(cfg.bits) or [int(self.rng.choice(class_bits(self.dtype, cfg.bit_class)))]
        if not self.left:
            return compute
        self.left -= 1
        calls = 0

        def faulty() -> T:
            nonlocal calls
            calls += 1
            if calls > 1 and not cfg.persistent:
                return compute()
            handle = self.layers[self.layer].register_forward_hook(self._fault(step, lambda: handle.remove()))
            try:
                return compute()
            finally:
                handle.remove()
        return faulty

    def _fault(self, step: int, done: Callable[[], None]):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
            done()  # one element of the step's first matmul in this layer
            index = int(self.rng.integers(output.numel()))
            if self.cfg.stage == "forward":
                with torch.no_grad():
                    self._flip(output.view(-1), index, step)
            else:
                output.register_hook(lambda grad: self._flip(grad.clone(memory_format=torch.contiguous_format).view(-1),
                                                             index, step).view_as(grad))
        return hook

    def _flip(self, flat: torch.Tensor, index: int, step: int) -> torch.Tensor:
        before = flat[index].item()
        flat[index] = flip_bits(flat[index:index + 1], self.bits)[0]
        self.record(step, "fault", f"{self.cfg.stage} {self.layer}[{index}] bits {self.bits}: {before:.4g} -> "
                                   f"{flat[index].item():.4g}")
        return flat
