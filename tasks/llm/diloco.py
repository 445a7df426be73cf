"""DiLoCo's outer loop: average pseudo-gradients once per round, then an outer Nesterov SGD step.

Each worker runs H inner steps on its own data with its own inner optimizer state. At a sync, the
pseudo-gradient (start-of-round params minus current params) is averaged with ONE all-reduce,
the params are reset to the start of the round and the outer optimizer steps with the averaged
pseudo-gradient as its gradient. Every worker holds the same outer state, so the result is
identical everywhere without a broadcast. With H=1, outer lr 1 and no momentum this is exactly
data-parallel SGD: θ - mean_i(lr·g_i).
"""

from __future__ import annotations

import torch
from torch import nn

from tasks.llm.config import DilocoConfig
from tasks.llm.ddp import CommStats, allreduce_mean

WIRE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class DilocoOuter:
    def __init__(self, params: list[nn.Parameter], cfg: DilocoConfig):
        self.params = list(params)
        self.anchor = [p.detach().clone() for p in self.params]
        momentum = cfg.outer_momentum
        self.opt = torch.optim.SGD(self.params, lr=cfg.outer_lr, momentum=momentum,
                                   nesterov=cfg.nesterov and momentum > 0)
        self.wire_dtype = WIRE_DTYPES[cfg.transfer_dtype]

    @torch.no_grad()
    def sync(self, stats: CommStats) -> None:
        deltas = [a - p for a, p in zip(self.anchor, self.params)]
        averaged = allreduce_mean(deltas, stats, self.wire_dtype)
        for p, a, g in zip(self.params, self.anchor, averaged):
            p.copy_(a)
            p.grad = g
        self.opt.step()
        for p, a in zip(self.params, self.anchor):
            p.grad = None
            a.copy_(p)

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the outer momentum; checkpoints are taken right after a sync, so anchor = params."""
        self.opt.load_state_dict(state["opt"])
        with torch.no_grad():
            for p, a in zip(self.params, self.anchor):
                a.copy_(p)
