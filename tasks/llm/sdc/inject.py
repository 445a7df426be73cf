"""Fault injection for the silent-data-corruption (SDC) study: bit flips in one matmul or one optimizer state.

A fault flips bits of one element of
- a Linear layer's output (stage `forward`),
- its input as its matmul reads it (`input`, the study's corrupted source operand): the matmul's
  output row of that token is what the corrupted operand makes of it, while the stored activation
  that the backward matmuls read stays intact,
- the gradient flowing back into its output (`backward`, an operand of both backward matmuls), or
- its weight's optimizer state (`optimizer`: Adam's first or second moment, Muon's momentum) as
  the step reads it, so the guard's statistic and the step's update see it, and an applied step
  carries it on in the state it writes.
Bits are positions in the dtype the element has: a matmul's operands and results are bf16 under
bf16 autocast, the optimizer state is fp32 like the master weights it follows. The schedule is the
study's: from `start_step` each step starts an event with probability p, and an event corrupts one
element per step for a uniform 1-5 steps. A fault is transient: it hits its step's first
forward-and-backward only, so a recompute is clean (an optimizer-state fault is undone before it),
unless `persistent` (a stuck unit: the recompute is hit too). The injector draws from its own
generator (the run's random numbers are untouched) and holds a hook only on the faulty layer while
a faulty step computes; with injection off it is never built.
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


def width(dtype: torch.dtype) -> int:
    _, e, m = LAYOUT[dtype]
    return 1 + e + m


def class_bits(dtype: torch.dtype, bit_class: str) -> list[int]:
    """Bit positions of a class: the sign, any exponent bit, the top or bottom 3 of them, or any mantissa bit."""
    _, e, m = LAYOUT[dtype]
    return {"sign": [e + m], "exponent": list(range(m, m + e)), "exp_high": [e + m - 1, e + m - 2, e + m - 3],
            "exp_low": [m, m + 1, m + 2], "mantissa": list(range(m))}[bit_class]


def fault_dtype(stage: str, train_dtype: torch.dtype) -> torch.dtype:
    """The dtype of the element a stage corrupts: the optimizer state is fp32, matmuls run in the training dtype."""
    return torch.float32 if stage == "optimizer" else train_dtype


def flip_bits(t: torch.Tensor, bits: list[int]) -> torch.Tensor:
    """A copy of `t` with the given bit positions flipped in every element (through an integer view)."""
    int_dtype, _, _ = LAYOUT[t.dtype]
    n = width(t.dtype)
    if not bits or any(not 0 <= b < n for b in bits):
        raise InputError(f"bits {bits} must be positions 0..{n - 1} of {t.dtype}")
    mask = sum(1 << b for b in set(bits))
    if mask >= 1 << (n - 1):  # the sign bit: as a two's-complement value of the integer dtype
        mask -= 1 << n
    return (t.contiguous().view(int_dtype) ^ mask).view(t.dtype)


class Injector:
    """Corrupts matmuls or optimizer state on the faulty rank: `wrap` each step's forward-and-backward."""

    def __init__(self, model: nn.Module, optimizers: list[torch.optim.Optimizer], cfg: SdcInjectConfig,
                 dtype: torch.dtype, record: Callable[..., None]):
        self.cfg, self.optimizers, self.record = cfg, optimizers, record
        self.dtype = fault_dtype(cfg.stage, dtype)
        self.rng = np.random.default_rng(cfg.seed)
        self.layers = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
        if cfg.layer and cfg.layer not in self.layers:
            raise InputError(f"sdc.inject.layer {cfg.layer!r} is not a Linear of the model; "
                             f"choose from {list(self.layers)}")
        if cfg.bits and not all(0 <= b < width(self.dtype) for b in cfg.bits):
            raise InputError(f"sdc.inject.bits {cfg.bits} must be positions 0..{width(self.dtype) - 1} of {self.dtype}")
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
        if cfg.stage == "optimizer":
            return self._state_fault(step, compute)
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
        def hook(module: nn.Linear, inputs, output: torch.Tensor) -> None:
            done()  # one element of the step's first matmul in this layer
            if self.cfg.stage == "input":
                self._operand(module, inputs[0], output, step)
                return
            index = int(self.rng.integers(output.numel()))
            if self.cfg.stage == "forward":
                with torch.no_grad():
                    self._flip(output.view(-1), index, step, f"forward {self.layer}[{index}]")
            else:
                where = f"backward {self.layer}[{index}]"
                output.register_hook(lambda grad: self._flip(grad.clone(memory_format=torch.contiguous_format).view(-1),
                                                             index, step, where).view_as(grad))
        return hook

    @torch.no_grad()
    def _operand(self, module: nn.Linear, x: torch.Tensor, output: torch.Tensor, step: int) -> None:
        """The output row of one token as the matmul computes it with one input element corrupted:
        y_r += (x'_rj - x_rj) W[:, j], in the dtype the matmul read its operands in (bf16 under autocast)."""
        rows = x.reshape(-1, module.in_features)
        index = int(self.rng.integers(rows.numel()))
        r, j = divmod(index, module.in_features)
        read = rows[r, j:j + 1].to(output.dtype)
        corrupted = flip_bits(read, self.bits)
        delta = corrupted.float() - read.float()
        row = output.view(-1, module.out_features)[r]
        row.copy_(row.float() + delta * module.weight[:, j].to(output.dtype).float())
        self.record(step, "fault", f"input {self.layer}[{r}, {j}] bits {self.bits}: {read.item():.4g} -> "
                                   f"{corrupted.item():.4g}")

    def _state_fault(self, step: int, compute: Callable[[], T]) -> Callable[[], T]:
        """One element of one state tensor of the layer's weight, flipped before the step reads it; a transient
        fault is undone before a recompute reads the state again."""
        weight = self.layers[self.layer].weight
        states = [(name, t) for opt in self.optimizers for name, t in sorted(opt.state.get(weight, {}).items())
                  if torch.is_tensor(t) and t.shape == weight.shape]
        if not states:  # no state yet (the first step) or a stateless optimizer
            return compute
        name, tensor = states[int(self.rng.integers(len(states)))]
        flat = tensor.view(-1)
        index = int(self.rng.integers(flat.numel()))
        before = flat[index].clone()
        calls = 0

        def faulty() -> T:
            nonlocal calls
            calls += 1
            if calls == 1:
                self._flip(flat, index, step, f"optimizer {self.layer}.weight {name}[{index}]")
            elif not self.cfg.persistent:
                flat[index] = before
            return compute()
        return faulty

    def _flip(self, flat: torch.Tensor, index: int, step: int, where: str) -> torch.Tensor:
        before = flat[index].item()
        flat[index] = flip_bits(flat[index:index + 1], self.bits)[0]
        self.record(step, "fault", f"{where} bits {self.bits}: {before:.4g} -> {flat[index].item():.4g}")
        return flat
