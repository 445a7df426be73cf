"""The hub's recovery paths: non-finite pseudo-gradients, error-feedback residuals, a killed site rejoining within
the run, and the outer rule per token. One Ray runtime serves the module (its start costs seconds)."""

from __future__ import annotations

import math

import pytest
import torch
from test_llm_train import tiny_cfg
from test_sdc import byte_source

from tasks.federated.config import LinkConfig
from tasks.federated.messages import RoundMessage, RoundReply
from tasks.llm.config import SdcGuardConfig, SiteConfig
from tasks.llm.sites.hub import outer_selection
from tasks.llm.train.run import run_training
from tasks.federated.wire import encode

LINK = {"bandwidth_mbps": 40.0, "latency_ms": 20.0}
N_PARAMS = 2 * 256 * 64 + 12 * 64 * 64  # tiny_cfg's GPT on bytes: embedding + head, then 4 d^2 attention + 8 d^2 MLP
PER_ROUND = 2 * 4 * 32  # tokens per site per round of H=2


@pytest.fixture(scope="module")
def ray_module():
    import ray

    from tasks.common.ray_runtime import ensure_ray

    ensure_ray()
    yield ray
    ray.shutdown()


def test_sites_whose_pseudo_gradients_are_all_non_finite_get_the_global_parameters_back(tmp_path, mlflow_store,
                                                                                      ray_module):
    """An infinite inner lr turns every site's parameters to inf/NaN after one step, in every round."""
    from tasks.llm.train.checkpoint import load_weights
    from tasks.llm.train.build import build_model

    cfg = tiny_cfg(mode="diloco", sites=[{"name": "a"}, {"name": "b"}], steps=6, diloco={"inner_steps": 2},
                   optim={"kind": "sgd", "lr": math.inf}, eval_every=0, checkpoint_every=0, register_model=False)
    s = run_training(cfg, byte_source(), out_dir=tmp_path / "run")
    assert [(row["a"], row["b"]) for row in s["timeline"]] == [("excluded", "excluded")] * 3
    losses = s["history"]  # each round's first step runs on the global parameters again; its second on inf
    assert all(math.isfinite(v) for v in losses[0::2]) and not any(math.isfinite(v) for v in losses[1::2])
    for site in s["sites"].values():  # the full parameters after rounds 0 and 1 (before: nothing came back)
        assert site["bytes_received"] == 2 * 4 * N_PARAMS
    initial, final = build_model(cfg, 256, None)[0], build_model(cfg, 256, None)[0]
    load_weights(final, s["model_dir"])  # no outer step was taken: the global parameters are the seeded ones
    assert all(torch.equal(p, q) for p, q in zip(initial.parameters(), final.parameters()))
    assert math.isfinite(s["val_bpb"])


def test_error_feedback_residuals_are_checkpointed_and_dropped_with_fresh_parameters(ray_module):
    from tasks.llm.sites.worker import SiteWorker

    cfg = tiny_cfg(mode="diloco", diloco={"transfer_dtype": "int8", "error_feedback": True})
    site = SiteConfig(name="s", link=LinkConfig())

    def worker(state):
        w = SiteWorker(cfg, byte_source(), site, 0, 0, 1, "cpu", None)
        w.start(None, 1, state)
        return w

    first = worker(None)
    reply = first.train_round(RoundMessage(steps=1, lr_step=0, send=True))
    assert reply.packet.nbytes == N_PARAMS + 4 * math.ceil(N_PARAMS / 256)
    residual = first.encoder.residual
    assert residual is not None and residual.abs().max() > 0
    saved = first.state()
    assert torch.equal(saved["residual"], residual)
    params = ray_module.put(encode(torch.zeros(N_PARAMS), "fp32"))
    resumed = worker(saved)  # resuming: inner state and residual come back, and stay with the global parameters
    resumed.train_round(RoundMessage(steps=0, lr_step=1, send=False, fresh_inner=False, params=params))
    assert torch.equal(resumed.encoder.residual, residual) and any(opt.state for opt in resumed.optimizers)
    first.train_round(RoundMessage(steps=0, lr_step=1, send=False, fresh_inner=True, params=params))
    assert first.encoder.residual is None  # it belonged to parameters the site no longer holds
    assert first.train_round(RoundMessage(steps=1, lr_step=1, send=True)).packet.nbytes == reply.packet.nbytes


def test_a_killed_site_rejoins_at_a_round_boundary_as_a_fresh_worker(tmp_path, mlflow_store, ray_module):
    sites = [{"name": "a", "link": LINK}, {"name": "b", "link": LINK, "rejoin_after": 1}]
    cfg = tiny_cfg(mode="diloco", sites=sites, steps=8, diloco={"inner_steps": 2}, eval_every=0, checkpoint_every=0,
                   register_model=False, kill=[{"site": "b", "round": 1}])
    s = run_training(cfg, byte_source(), out_dir=tmp_path / "run")
    assert [row["b"] for row in s["timeline"]] == ["synced", "failed", "synced", "synced"]
    assert s["dropped"] == [{"site": "b", "round": 1, "reason": "its worker process died", "missed": []}]
    b, a, n = s["sites"]["b"], s["sites"]["a"], 4 * N_PARAMS
    assert b["rejoined_rounds"] == [2] and b["failure"] == "" and b["tokens"] == 3 * PER_ROUND
    # b's counts: round 0, then its new process: the full parameters, one update (the dead one's round 1 is lost)
    assert (b["bytes_sent"], b["bytes_received"]) == (3 * n, 2 * n)
    assert (a["bytes_sent"], a["bytes_received"]) == (4 * n, 3 * n)
    # each reported transfer (a: 4 up, 3 down; b: 3 up, 2 down), timed on the wall clock between hub and site,
    # took at least what the link model says: the padding works (a broken one would show errors near -1)
    assert s["link_model_transfers"] == 12 and s["link_model_median_error"] >= -0.01


def test_the_outer_rule_compares_norms_per_token():
    guard = SdcGuardConfig(enabled=True, outer_ratio=1.5)

    def reply(norm: float, tokens: int) -> RoundReply:
        return RoundReply(packet="a pseudo-gradient", norm=norm, delta_tokens=tokens)

    longer = {"a": reply(1.0, 100), "b": reply(2.0, 200), "c": reply(1.1, 100)}  # b trained twice as long
    assert outer_selection(longer, guard) == (["a", "b", "c"], {})
    corrupt = {**longer, "d": reply(40.0, 100), "e": reply(float("nan"), 100)}
    kept, left_out = outer_selection(corrupt, guard)
    assert kept == ["a", "b", "c"] and sorted(left_out) == ["d", "e"] and "not finite" in left_out["e"]
    assert outer_selection(corrupt, SdcGuardConfig(enabled=False))[0] == ["a", "b", "c", "d"]  # NaN never averaged
