"""Silent data corruption: bit flips, injection off costs nothing, the guard detects and recomputes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tasks.llm.train.checkpoint import load_model
from tasks.llm.config import PretrainConfig
from tasks.llm.data.corpus import generate_corpus
from tasks.llm.data.batches import TokenStreamSource
from tasks.llm.model.gpt import GPT, GPTConfig
from tasks.llm.model.optim import build_optimizers
from tasks.llm.sdc.attach import attach
from tasks.llm.sdc.events import read_events
from tasks.llm.sdc.guard import healthy_sites
from tasks.llm.sdc.inject import class_bits, flip_bits
from tasks.llm.train.local import train_worker
from tasks.llm.train.run import run_training
from tasks.llm.train.run_folder import RunContext

# A gradient element of a block's query projection gets bit 30 (the exponent's top bit) flipped: x 2^128.
HARMFUL = {"enabled": True, "p": 1.0, "start_step": 12, "duration": [1, 1], "max_events": 1, "bits": [30],
           "stage": "backward", "layer": "transformer.h.0.attn.c_q"}


def byte_source(batch_size: int = 4, seq_len: int = 32) -> TokenStreamSource:
    """The generated corpus as byte tokens: no data folder needed."""
    arr = np.frombuffer(generate_corpus(60_000).encode(), dtype=np.uint8).astype(np.uint16)
    cut = int(len(arr) * 0.9)
    return TokenStreamSource(batch_size, seq_len, arrays={"train": arr[:cut], "val": arr[cut:]},
                             byte_lengths=np.ones(256, dtype=np.int64))


def tiny_cfg(**kw) -> PretrainConfig:
    base = {"depth": 1, "sequence_len": 32, "device_batch_size": 4, "steps": 20, "eval_every": 0, "eval_tokens": 256,
            "log_every": 5, "checkpoint_every": 0, "threads_per_worker": 1, "precision": "fp32", "compile": False,
            "experiment": "llm-test"}
    return PretrainConfig(**{**base, **kw})


def train(tmp_path, name: str, **kw) -> dict:
    """One run on the trainer's own path, in this process, without MLflow."""
    return train_worker(tiny_cfg(**kw), byte_source(), 0, 1, RunContext(out_dir=str(tmp_path / name)))


def weights(summary: dict) -> list[torch.Tensor]:
    return [p.detach() for p in load_model(summary["model_dir"])[0].parameters()]


def events(summary: dict, kind: str) -> list[dict]:
    return [e for e in summary.get("sdc_events", []) if e["event"] == kind]


def test_flipped_bits_give_the_expected_values():
    x = torch.tensor([1.5, 0.5, -2.0, 1.0])
    assert flip_bits(x, [23]).tolist() == [0.75, 1.0, -4.0, 0.5]  # exponent LSB: x 2 where 0, x / 2 where 1
    assert flip_bits(x[1:2], [30]).item() == 0.5 * 2.0 ** 128  # its highest: 0.5 x 2^128, still finite
    assert math.isinf(flip_bits(x[3:], [30]).item())  # 1.0 has exponent 127: all ones, mantissa 0
    assert flip_bits(x, [31]).tolist() == [-1.5, -0.5, 2.0, -1.0]
    assert flip_bits(x[3:], [22]).item() == 1.5  # the top mantissa bit
    assert torch.equal(flip_bits(flip_bits(x, [3, 27]), [3, 27]), x)
    b = torch.tensor([1.5, -3.0], dtype=torch.bfloat16)  # bf16 through an int16 view
    assert flip_bits(b, [7]).tolist() == [0.75, -6.0] and flip_bits(b, [15]).tolist() == [-1.5, 3.0]
    assert class_bits(torch.float32, "exp_high") == [30, 29, 28] and class_bits(torch.bfloat16, "sign") == [15]
    with pytest.raises(ValueError, match="positions 0..15"):
        flip_bits(b, [16])


def test_sdc_config_refuses_what_cannot_work():
    with pytest.raises(ValueError, match="compile=false"):
        tiny_cfg(compile=True, sdc={"inject": {"enabled": True}})
    with pytest.raises(ValueError, match="rollback"):
        tiny_cfg(mode="diloco", sdc={"guard": {"enabled": True, "on_repeat": "rollback"}})
    with pytest.raises(ValueError, match="duration"):
        tiny_cfg(sdc={"inject": {"duration": [3, 2]}})


def test_off_builds_nothing_and_an_idle_guard_changes_no_bit(tmp_path):
    model = GPT(GPTConfig.from_depth(1, 256, 32))
    assert attach(model, build_optimizers(model, tiny_cfg().optim), tiny_cfg(), 0, torch.float32, shared=False) == (None, None, None)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())

    plain = train(tmp_path, "plain")
    armed = train(tmp_path, "armed", sdc={"inject": {"enabled": True, "p": 0.0}, "guard": {"enabled": True}})
    assert "sdc_events" not in plain and armed["sdc_events"] == []
    assert armed["history"] == plain["history"]
    assert all(torch.equal(a, b) for a, b in zip(weights(armed), weights(plain)))


@pytest.mark.parametrize("kind, fault, reason, moved", [
    # 0 -> 32 in the gradient of a ReLU-masked MLP output: a finite fault (grad norm ~300) that only the Muon
    # matrices' stand-in statistic (momentum before orthogonalisation) catches
    ("muon", {"layer": "transformer.h.0.mlp.c_fc", "bits": [30, 25], "stage": "backward"}, "muon R", 0.05),
    ("adamw", {"layer": "transformer.h.0.mlp.c_proj", "bits": [30], "stage": "forward"}, "grad norm nan", 0.05),
    # an input element of the MLP's first matmul x 2^128: its output row overflows after the ReLU^2
    ("muon", {"layer": "transformer.h.0.mlp.c_fc", "bits": [30], "stage": "input"}, "grad norm nan", 0.05),
    # a momentum element of the MLP's first matrix x 2^128, finite: Muon's statistic jumps (the update's direction
    # is taken over for the rest of the run); the recompute reads the state again without the fault
    ("muon", {"layer": "transformer.h.0.mlp.c_fc", "bits": [30], "stage": "optimizer"}, "muon R", 0.01),
])
def test_guard_flags_a_harmful_fault_and_the_recompute_restores_the_step(tmp_path, kind, fault, reason, moved):
    optim, inject = {"kind": kind}, {**HARMFUL, **fault}
    clean = train(tmp_path, "clean", optim=optim)
    hit = train(tmp_path, "hit", optim=optim, sdc={"inject": inject})
    guarded = train(tmp_path, "guarded", optim=optim, sdc={"inject": inject, "guard": {"enabled": True}})

    assert [e["step"] for e in events(hit, "fault")] == [12]
    a, b = torch.cat([w.flatten() for w in weights(hit)]), torch.cat([w.flatten() for w in weights(clean)])
    assert not (a - b).norm() < moved * b.norm()  # unguarded the fault moved the weights for good (or to NaN)

    assert [(e["step"], e["event"]) for e in guarded["sdc_events"]] == [(12, "fault"), (12, "flag"), (12, "recompute")]
    assert events(guarded, "flag")[0]["detail"].startswith(reason)
    assert guarded["history"] == clean["history"]
    assert all(torch.equal(g, c) for g, c in zip(weights(guarded), weights(clean)))


@pytest.mark.parametrize("on_repeat", ["skip", "rollback"])
def test_a_fault_that_survives_the_recompute_is_skipped_or_rolled_back(tmp_path, on_repeat):
    stuck = {**HARMFUL, "persistent": True}
    run = train(tmp_path, "stuck", checkpoint_every=5,
                sdc={"inject": stuck, "guard": {"enabled": True, "on_repeat": on_repeat}})
    seen = [(e["step"], e["event"]) for e in run["sdc_events"]]
    assert seen == [(12, "fault"), (12, "flag"), (12, "recompute"), (12, "fault"), (12, "flag"), (12, on_repeat)]
    restored = all(torch.equal(r, c) for r, c in zip(weights(run), weights(train(tmp_path, "clean", checkpoint_every=5))))
    assert restored == (on_repeat == "rollback")  # replayed from step 10's checkpoint: the fault-free run
    assert all(torch.isfinite(w).all() for w in weights(run))


def test_a_clean_run_of_300_steps_raises_under_one_percent_flags(tmp_path):
    run = train(tmp_path, "clean", steps=300, sdc={"guard": {"enabled": True}})
    assert len({e["step"] for e in events(run, "flag")}) <= 3
    assert run["history"][-1] < run["history"][0] - 1.5  # it trained


def test_diloco_outer_rule_leaves_out_the_odd_site():
    assert healthy_sites([1.0, 1.3], 2.0) == [0, 1]
    assert healthy_sites([1.0, 5.0], 2.0) == [0]  # between two sites the larger one is the odd one
    assert healthy_sites([float("nan"), 1.0], 2.0) == [1]
    assert healthy_sites([1.0, 1.2, 0.9, 40.0], 2.0) == [0, 1, 2]
    assert healthy_sites([float("inf"), float("nan")], 2.0) == []


def test_ddp_ranks_recompute_together_on_two_ray_workers(tmp_path, mlflow_store, ray_local):
    """The fault hits rank 1 only; rank 0's own gradients are clean, yet it recomputes the step with rank 1."""
    import mlflow

    cfg = tiny_cfg(mode="ddp", workers=2, steps=14, sdc={"inject": {**HARMFUL, "rank": 1}, "guard": {"enabled": True}})
    s = run_training(cfg, byte_source(), out_dir=tmp_path / "ddp", stage="bench")
    rows = [(e["step"], e["rank"], e["event"]) for e in read_events(tmp_path / "ddp")]
    assert rows == [(12, 0, "flag"), (12, 0, "recompute"), (12, 1, "fault"), (12, 1, "flag"), (12, 1, "recompute")]
    assert read_events(tmp_path / "ddp")[0]["detail"] == "another worker flagged"
    assert (s["sdc_fault_steps"], s["sdc_flag_steps"], s["sdc_recompute_steps"], s["sdc_skip_steps"]) == (1, 1, 1, 0)
    assert all(math.isfinite(v) for v in s["history"])
    client = mlflow.tracking.MlflowClient()
    assert [(m.step, m.value) for m in client.get_metric_history(s["mlflow_run_id"], "sdc_recompute")] == [(12, 1.0)]
    assert "sdc_events.csv" in [a.path for a in client.list_artifacts(s["mlflow_run_id"])]
