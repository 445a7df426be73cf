"""The SDC study's detector, the injection stages and bit positions, and the up-front checks, without training."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from tasks.common.config import ConfigError
from tasks.common.errors import InputError
from tasks.llm.config import PretrainConfig, SdcInjectConfig
from tasks.llm.sdc.attach import check_config
from tasks.llm.benches.sdc import loss_spike_flags
from tasks.llm.sdc.guard import JumpDetector, UpdateRule, update_rms
from tasks.llm.sdc.inject import Injector, class_bits, fault_dtype, flip_bits


def test_mu_is_the_running_mean_of_the_first_1000_jumps_and_the_rule_applies_from_step_10():
    d = JumpDetector(alpha=0.5, active_from=10, mean_steps=1000)
    r = 0.0
    for t in range(1, 1001):  # jumps of 1 up to step 500, of 3 after: a mean frozen at step 10 would stay 1
        r += 1.0 if t <= 500 else 3.0
        if t == 9:
            assert not d.fires(t, d.prev + 1e6, grew=1.0)  # before step 10 nothing fires, however large the jump
        if t == 10:  # threshold mu / (alpha sqrt(dG)) = 1 / 0.5 = 2
            assert d.mu == 1.0 and d.fires(t, d.prev + 2.01, grew=1.0) and not d.fires(t, d.prev + 1.99, grew=1.0)
            assert not d.fires(t, d.prev + 1e6, grew=0.0)  # the rule needs a growing gradient norm
        d.accept(t, r)
    assert d.jumps == 999 and d.mu == pytest.approx((499 * 1 + 500 * 3) / 999)
    mu = d.mu
    d.accept(1001, r + 1e6)  # from step 1001 on mu stays what the first 1000 steps made it
    assert d.mu == mu
    assert d.fires(1002, d.prev + 4 * mu * 1.001, grew=0.25) and not d.fires(1002, d.prev + 4 * mu * 0.999, grew=0.25)


def test_a_flagged_step_enters_neither_mu_nor_the_next_difference():
    rule = UpdateRule(alpha=1.0, active_from=3, mean_steps=1000, kinds=["adamw"])
    for t, (norm, r) in enumerate([(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)], 1):
        assert not rule.why(t, norm, {"adamw": r})
        rule.accept(t, norm, {"adamw": r})
    assert rule.why(4, 2.0, {"adamw": 100.0}).startswith("adamw R 100 after 3")
    assert rule.why(4, float("nan"), {}) == "grad norm nan"
    assert rule.detectors["adamw"].mu == 1.0 and rule.prev_norm == 1.0


def test_adam_statistic_is_the_update_from_the_raw_moments():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(8, 4))
    opt = torch.optim.AdamW([w], lr=0.1, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.0)
    m1, v1, g = torch.randn(8, 4), torch.rand(8, 4), torch.randn(8, 4)
    opt.state[w] = {"step": torch.tensor(1.0), "exp_avg": m1, "exp_avg_sq": v1}  # the state after one step
    w.grad = g.clone()

    def rms(scale: float, bias_corrected: bool = False) -> float:
        m, v = 0.8 * m1 + 0.2 * scale * g, 0.95 * v1 + 0.05 * (scale * g) ** 2
        if bias_corrected:
            m, v = m / (1 - 0.8 ** 2), v / (1 - 0.95 ** 2)
        return (0.1 * (m / (v.sqrt() + 1e-10)).norm() / 32 ** 0.5).item()
    assert update_rms(opt, 1.0) == pytest.approx(rms(1.0), rel=1e-5)
    assert update_rms(opt, 0.5) == pytest.approx(rms(0.5), rel=1e-5)  # the clipped gradient
    assert abs(rms(1.0) / rms(1.0, bias_corrected=True) - 1) > 0.1  # at step 2 the two differ: not confused


def test_bit_positions_follow_the_dtype():
    assert class_bits(torch.float32, "exponent") == list(range(23, 31))
    assert class_bits(torch.bfloat16, "exponent") == list(range(7, 15))
    assert class_bits(torch.bfloat16, "mantissa") == list(range(7)) and class_bits(torch.float32, "sign") == [31]
    assert fault_dtype("forward", torch.bfloat16) == torch.bfloat16
    assert fault_dtype("optimizer", torch.bfloat16) == torch.float32  # the state follows the fp32 master weights
    x = torch.tensor([0.75], dtype=torch.bfloat16)
    assert flip_bits(x, [14]).item() == 0.75 * 2.0 ** 128 and flip_bits(x, [13]).item() == 0.75 * 2.0 ** -64
    model = nn.Sequential(nn.Linear(4, 3, bias=False))
    with pytest.raises(InputError, match="0..15"):
        Injector(model, [], SdcInjectConfig(enabled=True, bits=[20]), torch.bfloat16, lambda *a: None)
    Injector(model, [], SdcInjectConfig(enabled=True, bits=[20], stage="optimizer"), torch.bfloat16, lambda *a: None)


def _one_fault(stage: str, bits: list[int]) -> SdcInjectConfig:
    return SdcInjectConfig(enabled=True, p=1.0, start_step=1, duration=(1, 1), bits=bits, stage=stage, layer="0")


def test_an_input_operand_fault_changes_only_its_matmuls_output_row():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3, bias=False))
    x = torch.randn(4, 5, requires_grad=True)
    clean = model(x).detach()
    rows = []
    out = Injector(model, [], _one_fault("input", [31]), torch.float32, lambda *a: rows.append(a)).wrap(
        1, lambda: model(x))()
    r, j = map(int, re.search(r"\[(\d+), (\d+)\]", rows[0][2]).groups())
    expected = clean.clone()
    expected[r] -= 2 * x[r, j].detach() * model[0].weight[:, j].detach()  # the sign flip: x'_rj = -x_rj
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.equal(out[[i for i in range(4) if i != r]], clean[[i for i in range(4) if i != r]])
    out.sum().backward()  # the stored activation is intact: the weight gradient is the clean one
    assert torch.allclose(model[0].weight.grad, torch.ones(4, 3).T @ x.detach())


def test_a_bf16_output_fault_flips_a_bf16_exponent_bit():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8, bias=False))
    x = torch.randn(2, 8)
    cfg = SdcInjectConfig(enabled=True, p=1.0, start_step=1, duration=(1, 1), bit_class="exponent", layer="0")
    rows = []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        clean = model(x)
        out = Injector(model, [], cfg, torch.bfloat16, lambda *a: rows.append(a)).wrap(1, lambda: model(x))()
    assert out.dtype == torch.bfloat16
    bit = int(re.search(r"bits \[(\d+)\]", rows[0][2]).group(1))
    changed = (out != clean).nonzero()
    assert 7 <= bit <= 14 and len(changed) == 1
    i, k = changed[0].tolist()
    assert out[i, k].view(torch.int16) == clean[i, k].view(torch.int16) ^ (1 << bit)


def test_an_optimizer_state_fault_is_read_by_the_step_and_undone_for_a_recompute():
    model = nn.Sequential(nn.Linear(4, 4, bias=False))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    opt.state[model[0].weight] = {"step": torch.tensor(1.0), "exp_avg": torch.rand(4, 4),
                                  "exp_avg_sq": torch.rand(4, 4)}
    before = {k: v.clone() for k, v in opt.state[model[0].weight].items()}
    rows = []
    faulty = Injector(model, [opt], _one_fault("optimizer", [30]), torch.float32, lambda *a: rows.append(a)).wrap(
        1, lambda: {k: v.clone() for k, v in opt.state[model[0].weight].items()})
    seen = faulty()
    name = re.search(r"weight (\w+)\[", rows[0][2]).group(1)
    assert name in ("exp_avg", "exp_avg_sq") and (seen[name] != before[name]).sum() == 1
    assert all(torch.equal(seen[k], before[k]) for k in before if k != name)
    assert all(torch.equal(v, before[k]) for k, v in faulty().items())  # the recompute reads the clean state


def test_loss_zscore_baseline_flags_a_spike_and_keeps_it_out_of_its_window():
    history = [2.0 + 0.01 * (i % 3) for i in range(30)]
    history[20] = 2.5
    history[25] = float("nan")
    assert loss_spike_flags(history, z=6.0, window=10, active_from=10) == {21, 26}
    assert loss_spike_flags(history, z=1e9, window=10, active_from=10) == {26}


@pytest.mark.parametrize("overrides, message", [
    ({"inject": {"enabled": True, "layer": "transformer.h.9.nosuch"}},
     "sdc.inject.layer 'transformer.h.9.nosuch' is not a Linear of the depth-4 GPT; use one of "
     "transformer.h.<i>.attn.c_q"),
    ({"inject": {"bits": [40]}}, "sdc.inject.bits [40] are not bit positions of float32"),
    ({"inject": {"enabled": True, "bits": [-1]}}, "are not bit positions of float32"),
])
def test_an_injection_that_cannot_run_is_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        check_config(PretrainConfig(compile=False, precision="fp32", sdc=overrides))
    assert "\n" not in str(info.value)


def test_bits_are_checked_against_the_training_dtype_and_good_settings_pass():
    bf16 = {"compile": False, "precision": "bf16"}
    with pytest.raises(ConfigError, match="bfloat16"):
        check_config(PretrainConfig(**bf16, sdc={"inject": {"enabled": True, "bits": [20]}}))
    check_config(PretrainConfig(**bf16, sdc={"inject": {"enabled": True, "bits": [20], "stage": "optimizer"}}))
    check_config(PretrainConfig(compile=False, precision="fp32", sdc={"inject": {
        "enabled": True, "bits": [30, 31], "layer": "transformer.h.3.mlp.c_fc", "stage": "input"}}))
    with pytest.raises(ConfigError, match="keeps none"):
        check_config(PretrainConfig(compile=False, optim={"kind": "sgd"}, sdc={"inject": {"enabled": True,
                                                                                          "stage": "optimizer"}}))
