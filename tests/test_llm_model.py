"""The GPT, its KV cache, Muon and checkpoints: shapes, masks, cache equivalence, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.common.precision import resolve_precision
from tasks.llm.train.checkpoint import CheckpointError, load_model, resolve_checkpoint, save_checkpoint
from tasks.llm.config import OptimConfig
from tasks.llm.model.fused_loss import linear_softcap_cross_entropy
from tasks.llm.model.kv_cache import KVCache
from tasks.llm.model.gpt import GPT, GPTConfig
from tasks.llm.model.optim import Muon, build_optimizers, lr_multiplier, zeropower_via_newtonschulz5

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


def test_mfu_never_exceeds_one():
    from tasks.llm.model.flops import utilisation

    mfu, peak = utilisation(1e9, torch.float32, n=128)
    assert 0 < mfu < 1 and peak > 1e9
    with pytest.warns(UserWarning, match="MFU capped at 1"):
        assert utilisation(1e18, torch.float32, n=128)[0] == 1.0


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
    assert muon.ns_dtype == torch.float32 and build_optimizers(model, OptimConfig(), "bf16")[1].ns_dtype == torch.bfloat16
    cfg = OptimConfig(warmup_frac=0.1, warmdown_frac=0.5, final_lr_frac=0.1)
    mults = [lr_multiplier(s, 100, cfg) for s in range(100)]
    assert mults[0] == pytest.approx(0.1) and mults[10:50] == [1.0] * 40
    assert mults[99] < 0.15 and all(a >= b for a, b in zip(mults[50:], mults[51:]))


def test_muon_orthogonalises_each_matrix_of_a_shape_batch_on_its_own():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(16, 32)) for _ in range(3)] + [torch.nn.Parameter(torch.randn(32, 8))]
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.randn_like(p)
    Muon(params, lr=0.1, momentum=0.0, nesterov=False).step()
    for p, b in zip(params, before):
        scale = 0.1 * max(1.0, p.size(0) / p.size(1)) ** 0.5
        assert torch.allclose(p.detach(), b - scale * zeropower_via_newtonschulz5(p.grad), atol=1e-6)


@pytest.mark.parametrize("compiled", [False, True])
def test_fused_head_loss_and_gradients_equal_the_plain_path(compiled):
    torch.manual_seed(0)
    h = torch.randn(70, 32, requires_grad=True)  # 70 rows: chunks of 32, 32 and a ragged 6
    w = (0.5 * torch.randn(50, 32)).requires_grad_()
    y = torch.randint(0, 50, (70,))
    y[[3, 40]] = -1
    plain = torch.nn.functional.cross_entropy(15 * torch.tanh(h @ w.T / 15), y, ignore_index=-1)
    plain.backward()
    expected = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    fused = linear_softcap_cross_entropy(h, w, y, 15.0, chunk=32, compiled=compiled)
    (3 * fused).backward()
    assert fused.item() == pytest.approx(plain.item(), rel=1e-5)
    assert torch.allclose(h.grad, 3 * expected[0], atol=1e-5) and torch.allclose(w.grad, 3 * expected[1], atol=1e-5)


def test_compiled_training_step_matches_the_plain_model():
    plain, fast = tiny(), tiny()
    fast.compile_for_training()
    x, y = torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = [m(x, y) for m in (plain, fast)]
    for loss in losses:
        loss.backward()
    assert losses[1].item() == pytest.approx(losses[0].item(), rel=1e-2)
    for a, b in zip(plain.parameters(), fast.parameters()):  # equal up to bf16 rounding
        assert (a.grad - b.grad).norm() <= 0.03 * a.grad.norm()
    with torch.no_grad():  # evaluation keeps the plain path and returns per-token losses
        assert fast(x, y, loss_reduction="none").shape == (32,)


def test_checkpoint_round_trip(tmp_path):
    model = tiny()
    save_checkpoint(tmp_path / "ck", model, {"opt": {"x": torch.ones(2)}}, {"step": 7, "tokenizer": "t.json"})
    loaded, meta = load_model(tmp_path / "ck")
    x = torch.randint(0, 64, (1, 9))
    assert meta["step"] == 7 and meta["model_config"]["n_layer"] == 2
    assert torch.equal(loaded(x), model.eval()(x))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        resolve_checkpoint(tmp_path / "nothing")


def test_loss_drops_on_tinyshakespeare(shared_data):
    """60 steps of the default optimizers at the precision this machine runs fast (speed: seedflow bench pretrain)."""
    text = (shared_data / "text" / "tinyshakespeare.txt").read_bytes()
    data = torch.from_numpy(np.frombuffer(text, dtype=np.uint8).astype(np.int64))
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_depth(2, 256, 64))
    precision = resolve_precision("auto")
    opts = build_optimizers(model, OptimConfig(), precision)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        idx = torch.randint(0, len(data) - 65, (16,), generator=gen)
        batch = torch.stack([data[i:i + 65] for i in idx])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        for opt in opts:
            opt.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[0] == pytest.approx(np.log(256), rel=0.05)  # zero-init head: uniform start
    assert np.mean(losses[-10:]) < 3.0  # bytes of English: well below the 5.5 nats of uniform guessing
