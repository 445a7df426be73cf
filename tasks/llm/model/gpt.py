"""A GPT in the nanochat style.

Rotary embeddings, QK norm, parameter-free RMSNorm, ReLU^2 MLP, no biases, untied embedding and
head, soft-capped logits, optional grouped-query attention, `scaled_dot_product_attention`.
Sized by depth: width = 64 x depth, head dim 64. Weights stay fp32 (master copy); speed comes
from running the forward under bf16 autocast.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tasks.llm.model.fused_loss import linear_softcap_cross_entropy
from tasks.llm.model.kv_cache import KVCache

HEAD_DIM = 64
SOFTCAP = 15.0


@dataclass
class GPTConfig:
    sequence_len: int = 256
    vocab_size: int = 4096
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 4
    n_embd: int = 256

    @classmethod
    def from_depth(cls, depth: int, vocab_size: int, sequence_len: int, n_kv_head: int = 0) -> GPTConfig:
        n_embd = 64 * depth
        n_head = max(1, n_embd // HEAD_DIM)
        return cls(sequence_len, vocab_size, depth, n_head, n_kv_head or n_head, n_embd)

    def to_dict(self) -> dict:
        return asdict(self)


def norm(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free RMSNorm."""
    return F.rms_norm(x, (x.size(-1),))


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1).to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head = config.n_head, config.n_kv_head
        self.head_dim = config.n_embd // config.n_head
        assert config.n_head % config.n_kv_head == 0, "n_kv_head must divide n_head"
        self.c_q = nn.Linear(config.n_embd, self.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor], kv_cache: KVCache | None) -> torch.Tensor:
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim)
        cos, sin = cos_sin
        q, k = norm(apply_rotary(q, cos, sin)), norm(apply_rotary(k, cos, sin))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if kv_cache is not None:
            k, v = kv_cache.insert_kv(self.layer_idx, k, v)
        Tq, Tk = q.size(2), k.size(2)
        gqa = self.n_head != self.n_kv_head
        if Tq == Tk:  # training, or a prefill from position 0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        elif Tq == 1:  # decode: the new token sees everything cached
            y = F.scaled_dot_product_attention(q, k, v, is_causal=False, enable_gqa=gqa)
        else:  # prefill after a cached prefix: all of the prefix, causal within the chunk
            mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(diagonal=Tk - Tq)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.attn = CausalSelfAttention(config, layer_idx)
        self.mlp = MLP(config)

    def forward(self, x, cos_sin, kv_cache):
        x = x + self.attn(norm(x), cos_sin, kv_cache)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(config.vocab_size, config.n_embd),
            "h": nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
        })
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.rotary_len = config.sequence_len * 10  # room for generation past the training length
        cos, sin = self._rotary(self.rotary_len, config.n_embd // config.n_head)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.fast_training = False
        self.init_weights()

    @staticmethod
    def _rotary(seq_len: int, head_dim: int, base: float = 10000.0):
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
        return freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]  # [1, T, 1, D/2]

    @torch.no_grad()
    def init_weights(self) -> None:
        """nanochat's init: unit-variance embedding, fan-in scaled matrices, zero output projections."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                fan_out, fan_in = module.weight.shape
                std = 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in))
                module.weight.normal_(0.0, std)
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, 1.0)
        self.lm_head.weight.zero_()
        for block in self.transformer.h:
            block.attn.c_proj.weight.zero_()
            block.mlp.c_proj.weight.zero_()

    def num_flops_per_token(self) -> int:
        """Training FLOPs per token: 6 x non-embedding params plus attention scores (as nanochat)."""
        n_params = sum(p.numel() for p in self.parameters())
        c = self.config
        return 6 * (n_params - self.transformer.wte.weight.numel()) + 12 * c.n_layer * c.n_head * (c.n_embd // c.n_head) * c.sequence_len

    def matrix_params(self) -> list[nn.Parameter]:
        return [p for p in self.transformer.h.parameters()]

    def compile_for_training(self) -> None:
        """Training steps run the blocks through torch.compile and fuse head, soft-cap and loss.

        Only gradient-enabled, cache-free calls with a mean loss take this path; evaluation and
        generation keep the plain one, so their varying shapes cause no recompiles. Compilation
        costs seconds up front and pays off over a run, which is why it is a setting.
        """
        self._trunk = torch.compile(self._trunk)
        self.fast_training = True

    def _trunk(self, idx: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kv_cache: KVCache | None) -> torch.Tensor:
        """Embedding and blocks: the normalised final hidden state."""
        x = norm(self.transformer.wte(idx))
        for block in self.transformer.h:
            x = block(x, (cos, sin), kv_cache)
        return norm(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, kv_cache: KVCache | None = None,
                loss_reduction: str = "mean") -> torch.Tensor:
        B, T = idx.shape
        t0 = 0 if kv_cache is None else kv_cache.get_pos()
        if t0 + T > self.rotary_len:
            raise ValueError(f"sequence position {t0 + T} exceeds the rotary table ({self.rotary_len})")
        cos, sin = self.cos[:, t0:t0 + T], self.sin[:, t0:t0 + T]
        fast = self.fast_training and targets is not None and kv_cache is None and loss_reduction == "mean" \
            and torch.is_grad_enabled()
        if fast:
            h = self._trunk(idx, cos, sin, None)
            return linear_softcap_cross_entropy(h.view(B * T, -1), self.lm_head.weight, targets.reshape(-1), SOFTCAP,
                                                compiled=True)
        h = GPT._trunk(self, idx, cos, sin, kv_cache)  # the class's plain trunk, even when compiled
        logits = self.lm_head(h).float()
        logits = SOFTCAP * torch.tanh(logits / SOFTCAP)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1,
                               reduction=loss_reduction)
