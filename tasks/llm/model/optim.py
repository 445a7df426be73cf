"""Optimizers and the learning-rate schedule, as nanochat.

Muon (momentum, then Newton-Schulz orthogonalisation of the update) for the 2-D matrices of the
transformer blocks, AdamW for the embedding and the head (they are lookups / a classifier, where
orthogonalised updates make no sense). Plain AdamW or SGD for everything as options; SGD exists
because DiLoCo with H=1 equals data-parallel training exactly only with a linear inner optimizer.
"""

from __future__ import annotations

import torch
from torch import nn

from tasks.llm.config import OptimConfig


def zeropower_via_newtonschulz5(G: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Approximately orthogonalise G, a matrix or a batch of them (quintic Newton-Schulz, coefficients
    from Keller Jordan's Muon), iterating in `dtype`: bf16 where bf16 matmuls are fast, else fp32 (an
    emulated bf16 Newton-Schulz took 10 s of a step that fp32 does in 0.2 s). The polynomial runs as
    fused multiply-adds (baddbmm): on a CPU separate scale-and-add passes cost more than the matmuls."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.to(dtype).reshape(-1, *G.shape[-2:])
    transposed = G.size(-2) > G.size(-1)
    if transposed:
        X = X.mT
    X = (X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)).contiguous()
    for _ in range(steps):
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a)
    return (X.mT if transposed else X).reshape(G.shape).to(G.dtype)


class Muon(torch.optim.Optimizer):
    """MomentUm Orthogonalized by Newton-schulz, for 2-D parameters only."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5,
                 ns_dtype: torch.dtype = torch.float32):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        """Matrices of one shape are orthogonalised together, as one batched Newton-Schulz."""
        for group in self.param_groups:
            by_shape: dict[torch.Size, list[nn.Parameter]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(p.shape, []).append(p)
            for shape, params in by_shape.items():
                updates = []
                for p in params:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p.grad)
                    buf = state["momentum_buffer"]
                    buf.lerp_(p.grad, 1 - group["momentum"])
                    updates.append(p.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf)
                orthogonal = zeropower_via_newtonschulz5(torch.stack(updates), group["ns_steps"], self.ns_dtype)
                scale = -group["lr"] * max(1.0, shape[-2] / shape[-1]) ** 0.5
                for p, update in zip(params, orthogonal.unbind(0)):
                    p.add_(update, alpha=scale)


def build_optimizers(model: nn.Module, cfg: OptimConfig, precision: str = "fp32") -> list[torch.optim.Optimizer]:
    """The optimizers of `model`; each param group remembers its base lr as `initial_lr`.

    `precision` is the run's resolved precision ("bf16" or "fp32"): Muon iterates in it."""
    if cfg.kind == "adamw":
        opts = [torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=1e-10,
                                  weight_decay=cfg.weight_decay)]
    elif cfg.kind == "sgd":
        opts = [torch.optim.SGD(model.parameters(), lr=cfg.lr)]
    else:
        scale = (model.config.n_embd / 768) ** -0.5  # nanochat: AdamW lrs tuned at width 768
        adam_groups = [
            dict(params=[model.transformer.wte.weight], lr=cfg.embedding_lr * scale),
            dict(params=[model.lm_head.weight], lr=cfg.unembedding_lr * scale),
        ]
        opts = [
            torch.optim.AdamW(adam_groups, betas=cfg.betas, eps=1e-10, weight_decay=cfg.weight_decay),
            Muon(model.matrix_params(), lr=cfg.matrix_lr,
                 ns_dtype=torch.bfloat16 if precision == "bf16" else torch.float32),
        ]
    for opt in opts:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return opts


def lr_multiplier(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Warm-up, constant, then linear decay to `final_lr_frac` over the last `warmdown_frac`."""
    warmup = round(cfg.warmup_frac * total_steps)
    warmdown = round(cfg.warmdown_frac * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if step <= total_steps - warmdown:
        return 1.0
    progress = (total_steps - step) / max(warmdown, 1)
    return progress + (1 - progress) * cfg.final_lr_frac


def set_lr(optimizers: list[torch.optim.Optimizer], multiplier: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * multiplier
