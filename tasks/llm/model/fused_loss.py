"""Head projection, logit soft-cap and cross-entropy in one pass over row chunks.

The plain path materialises [tokens, vocab] logits several times (bf16 out of the matmul, an fp32
copy, tanh, log-softmax, and the same again backwards): on a CPU that memory traffic, not the
matmul, is most of a small model's step. Here each chunk of rows is projected, and its loss and
its gradient with respect to the logits are computed at once (one compiled kernel when
`compiled`); two large matmuls then turn the gradient into dL/dh and dL/dW. The forward pass
keeps only those, so the backward pass is a scale.
"""

from __future__ import annotations

import torch


def _rows_loss_and_grad(logits: torch.Tensor, targets: torch.Tensor, softcap: float):
    """Per-row loss of softcap * tanh(logits / softcap), its gradient without the target term, and
    the target term (dz/dlogit at the target) to subtract. Rows with target -1 are ignored.

    Soft-capped logits never exceed `softcap`, so exp(z - softcap) cannot overflow: the log-sum-exp
    needs no max pass.
    """
    t = torch.tanh(logits.float() / softcap)
    e = torch.exp(softcap * (t - 1))
    total = e.sum(dim=-1)
    valid = targets >= 0
    t_target = t.gather(1, targets.clamp(min=0)[:, None])[:, 0]
    loss = torch.where(valid, softcap * (1 - t_target) + torch.log(total), 0.0)
    grad = e * (1 - t * t) * (valid / total)[:, None]
    return loss, grad.to(logits.dtype), (1 - t_target * t_target) * valid


_compiled_rows = None


def _rows_kernel(compiled: bool):
    global _compiled_rows
    if not compiled:
        return _rows_loss_and_grad
    if _compiled_rows is None:
        _compiled_rows = torch.compile(_rows_loss_and_grad, dynamic=False)
    return _compiled_rows


class _LinearSoftcapCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, softcap, chunk, compiled):
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else weight.dtype
        hc, wc = h.to(dtype), weight.to(dtype)
        rows = _rows_kernel(compiled)
        grad_logits = torch.empty(h.size(0), weight.size(0), dtype=dtype)
        loss = torch.zeros((), dtype=torch.float32)
        for start in range(0, h.size(0), chunk):
            y_rows = targets[start:start + chunk]
            row_loss, g, g_target = rows(hc[start:start + chunk] @ wc.T, y_rows, softcap)
            g.scatter_add_(1, y_rows.clamp(min=0)[:, None], -g_target.to(g.dtype)[:, None])
            grad_logits[start:start + chunk] = g
            loss += row_loss.sum()
        grad_h, grad_w = grad_logits @ wc, (grad_logits.T @ hc).float()
        count = (targets >= 0).sum().clamp(min=1)
        ctx.save_for_backward(grad_h, grad_w, count)
        ctx.h_dtype, ctx.w_dtype = h.dtype, weight.dtype
        return loss / count

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, count = ctx.saved_tensors
        scale = grad_out / count
        return (grad_h * scale).to(ctx.h_dtype), (grad_w * scale).to(ctx.w_dtype), None, None, None, None


def linear_softcap_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, softcap: float,
                                 chunk: int = 256, compiled: bool = False) -> torch.Tensor:
    """Mean cross-entropy of softcap * tanh((h @ weight.T) / softcap) against `targets` (-1 = ignore).

    h: [N, C], weight: [V, C], targets: [N]. Equal to the plain computation up to bf16 rounding.
    """
    return _LinearSoftcapCE.apply(h, weight, targets, softcap, chunk, compiled)
