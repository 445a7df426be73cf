"""The GPT, its KV cache, Muon and checkpoints: shapes, masks, cache equivalence, learning."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from tasks.llm.checkpoint import load_model, resolve_checkpoint, save_checkpoint
from tasks.llm.config import OptimConfig
from tasks.llm.kv_cache import KVCache
from tasks.llm.model import GPT, GPTConfig
from tasks.llm.optim import build_optimizers, lr_multiplier, zeropower_via_newtonschulz5

torch.set_num_threads(1)  # shared 2-core machine: one thread is the robust choice


def tiny(vocab=64, depth=2, seq=32, n_kv_head=0, seed=0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig.from_depth(depth, vocab, seq, n_kv_head))
    with torch.no_grad():  # nanochat zero-inits output projections; perturb so every path matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_from_depth_sizes_like_nanochat():
    c = GPTConfig.from_depth(4, 1000, 128)
    assert (c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.vocab_size) == (4, 256, 4, 4, 1000)
    assert GPTConfig.from_depth(6, 10, 8, n_kv_head=2).n_kv_head == 2


@pytest.mark.parametrize("n_kv_head", [0, 1])
def test_shapes_and_untied_head(n_kv_head):
    model = tiny(n_kv_head=n_kv_head)
    x = torch.randint(0, 64, (3, 17))
    logits = model(x)
    assert logits.shape == (3, 17, 64) and logits.dtype == torch.float32
    assert logits.abs().max() <= 15.0  # soft-capped
    assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Linear))
    loss = model(x, x)
    assert loss.ndim == 0 and loss.item() > 0
    assert model(x, x, loss_reduction="none").shape == (3 * 17,)


def test_ignored_targets_do_not_count():
    model = tiny()
    x = torch.randint(0, 64, (2, 16))
    y = torch.randint(0, 64, (2, 16))
    masked = y.clone()
    masked[:, :8] = -1
    per_token = model(x, y, loss_reduction="none").view(2, 16)
    assert torch.allclose(model(x, masked), per_token[:, 8:].mean(), atol=1e-6)


def test_causal_future_tokens_do_not_change_the_past():
    model = tiny()
    x = torch.randint(0, 64, (1, 20))
    y = x.clone()
    y[0, 15:] = (y[0, 15:] + 1) % 64
    assert torch.allclose(model(x)[:, :15], model(y)[:, :15], atol=1e-5)
    assert not torch.allclose(model(x)[:, 15:], model(y)[:, 15:], atol=1e-3)


@pytest.mark.parametrize("n_kv_head", [0, 1])
def test_kv_cache_prefill_chunks_and_decode_match_full_forward(n_kv_head):
    model = tiny(n_kv_head=n_kv_head).eval()
    c = model.config
    x = torch.randint(0, 64, (2, 24))
    full = model(x)
    cache = KVCache(2, c.n_kv_head, 8, c.n_embd // c.n_head, c.n_layer)  # grows past 8 positions
    parts = [model(x[:, :10], kv_cache=cache), model(x[:, 10:19], kv_cache=cache)]
    parts += [model(x[:, t:t + 1], kv_cache=cache) for t in range(19, 24)]
    assert cache.pos == 24
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-4)
    cache.reset()
    assert cache.pos == 0 and torch.allclose(model(x[:, :5], kv_cache=cache), full[:, :5], atol=1e-4)


def test_flops_per_token_counts_matrices_not_embedding():
    model = tiny(vocab=1000, depth=2, seq=64)
    n = sum(p.numel() for p in model.parameters()) - model.transformer.wte.weight.numel()
    assert model.num_flops_per_token() == 6 * n + 12 * 2 * 2 * 64 * 64


def test_newton_schulz_orthogonalises():
    g = torch.randn(64, 128)
    s = torch.linalg.svdvals(zeropower_via_newtonschulz5(g).float())
    assert s.min() > 0.5 and s.max() < 1.3  # Muon's quintic pushes all singular values near 1
    assert torch.linalg.svdvals(g).max() / torch.linalg.svdvals(g).min() > 2


def test_muon_groups_and_schedule():
    model = tiny()
    adam, muon = build_optimizers(model, OptimConfig())
    assert sum(len(g["params"]) for g in muon.param_groups) == 6 * 2  # q, k, v, proj, fc, mlp proj per layer
    assert {id(p) for g in adam.param_groups for p in g["params"]} == {id(model.transformer.wte.weight), id(model.lm_head.weight)}
    cfg = OptimConfig(warmup_frac=0.1, warmdown_frac=0.5, final_lr_frac=0.1)
    mults = [lr_multiplier(s, 100, cfg) for s in range(100)]
    assert mults[0] == pytest.approx(0.1) and mults[10:50] == [1.0] * 40
    assert mults[99] < 0.15 and all(a >= b for a, b in zip(mults[50:], mults[51:]))


def test_checkpoint_round_trip(tmp_path):
    model = tiny()
    save_checkpoint(tmp_path / "ck", model, {"opt": {"x": torch.ones(2)}}, {"step": 7, "tokenizer": "t.json"})
    loaded, meta = load_model(tmp_path / "ck")
    x = torch.randint(0, 64, (1, 9))
    assert meta["step"] == 7 and meta["model_config"]["n_layer"] == 2
    assert torch.equal(loaded(x), model.eval()(x))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_checkpoint(tmp_path / "nothing")


def test_loss_drops_on_tinyshakespeare_within_seconds(shared_data):
    text = (shared_data / "text" / "tinyshakespeare.txt").read_bytes()
    data = torch.from_numpy(np.frombuffer(text, dtype=np.uint8).astype(np.int64))
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_depth(2, 256, 64))
    opts = build_optimizers(model, OptimConfig())
    gen = torch.Generator().manual_seed(0)
    start, losses = time.perf_counter(), []
    for _ in range(60):
        idx = torch.randint(0, len(data) - 65, (16,), generator=gen)
        batch = torch.stack([data[i:i + 65] for i in idx])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        for opt in opts:
            opt.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[0] == pytest.approx(np.log(256), rel=0.05)  # zero-init head: uniform start
    assert np.mean(losses[-10:]) < 3.0  # bytes of English: well below the 5.5 nats of uniform guessing
    assert time.perf_counter() - start < 60
