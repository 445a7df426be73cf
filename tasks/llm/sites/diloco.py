"""DiLoCo's outer loop, held by the hub: the global parameters and the outer Nesterov SGD.

Each site runs H inner steps from the global parameters with its own inner optimizer and sends
its pseudo-gradient (global minus its params). The hub averages the pseudo-gradients of the
sites that reported, weighted by the tokens each processed in the round, and steps the outer
optimizer with the average as gradient. What it sends back is the update (new minus old global
parameters) on the same wire as the pseudo-gradients; the hub applies exactly what it sent, so
every site and the hub hold bit-identical parameters whatever the wire dtype. With H=1, outer lr
1 and no momentum this is data-parallel SGD: θ - Σ_i w_i lr g_i.
"""

from __future__ import annotations

import torch

from tasks.llm.config import DilocoConfig
from tasks.federated.wire import Encoder, Packet, decode


def weighted_mean(vectors: list[torch.Tensor], tokens: list[int]) -> torch.Tensor:
    """Σ w_i v_i with w_i = tokens_i / Σ tokens: a site that processed more data counts for more."""
    total = sum(tokens)
    if not vectors or total <= 0:
        raise ValueError(f"nothing to average: {len(vectors)} vector(s), {total} tokens")
    out = torch.zeros_like(vectors[0])
    for v, n in zip(vectors, tokens):
        out.add_(v, alpha=n / total)
    return out


class OuterState:
    """The global parameters as one flat fp32 vector, the outer optimizer over it and its version
    (the number of outer steps taken), from which a site's copy can be told current or stale."""

    def __init__(self, flat_params: torch.Tensor, cfg: DilocoConfig):
        self.params = torch.nn.Parameter(flat_params.detach().float().clone())
        momentum = cfg.outer_momentum
        self.opt = torch.optim.SGD([self.params], lr=cfg.outer_lr, momentum=momentum,
                                   nesterov=cfg.nesterov and momentum > 0)
        self.encoder = Encoder(cfg.transfer_dtype, cfg.int8_block, cfg.error_feedback)
        self.version = 0

    @torch.no_grad()
    def step(self, pseudo_gradient: torch.Tensor) -> Packet:
        """One outer step; returns the update as sent on the wire (already applied here)."""
        before = self.params.detach().clone()
        self.params.grad = pseudo_gradient
        self.opt.step()
        self.params.grad = None
        update = self.encoder(self.params.detach() - before)
        self.params.copy_(before + decode(update))
        self.version += 1
        return update

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict(), "version": self.version, "residual": self.encoder.residual}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])
        self.version, self.encoder.residual = state["version"], state["residual"]
