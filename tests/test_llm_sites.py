"""Training across sites: links, the wire, the outer step, joins, kill -9 of a worker, resume with other sites.

One Ray runtime serves the module (its start costs seconds)."""

from __future__ import annotations

import pytest
import torch
from test_llm_train import tiny_cfg
from test_sdc import byte_source

from tasks.common.errors import InputError
from tasks.federated.config import LinkConfig
from tasks.federated.messages import RoundMessage
from tasks.llm.config import SiteConfig
from tasks.llm.train.device import resolve_device
from tasks.federated.strategy import OuterState, weighted_mean
from tasks.federated.link import Link, TransferLog, ring_allreduce
from tasks.llm.train.run import run_training
from tasks.federated.wire import Encoder, decode, encode

LINK = {"bandwidth_mbps": 40.0, "latency_ms": 20.0}
N_PARAMS = 2 * 256 * 64 + 12 * 64 * 64  # tiny_cfg's GPT on bytes: embedding + head, then 4 d^2 attention + 8 d^2 MLP
PER_STEP = 4 * 32  # tokens per step per site


@pytest.fixture(scope="module")
def ray_module():
    import ray

    from tasks.common.ray_runtime import ensure_ray

    ensure_ray()
    yield ray
    ray.shutdown()


class Clock:
    """perf_counter and sleep of a clock that moves only when told or slept on."""

    def __init__(self):
        self.now, self.slept = 0.0, []

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_transfer_is_padded_to_bytes_over_bandwidth_plus_latency(monkeypatch):
    """Pacing, on a clock the test controls (the measured times are in `seedflow bench diloco-wan`)."""
    import tasks.federated.link as link_module

    clock = Clock()
    monkeypatch.setattr(link_module, "time", clock)
    link = Link(LinkConfig(bandwidth_mbps=8.0, latency_ms=30.0))
    assert link.min_seconds(100_000) == pytest.approx(0.1 + 0.03)
    clock.now = 0.02  # the real transfer took 20 ms: the link pads it to 130 ms
    link.pace(0.0, 100_000, "send")
    assert clock.slept == [pytest.approx(0.11)] and clock.now == pytest.approx(0.13)
    started = clock.now
    clock.now += 0.5  # a transfer slower than the link needs no padding
    link.pace(started, 50_000, "receive")
    assert len(clock.slept) == 1
    assert (link.stats.bytes_sent, link.stats.bytes_received, link.stats.transfers) == (100_000, 50_000, 2)
    assert link.stats.seconds == pytest.approx(0.13 + 0.5)
    Link(LinkConfig()).pace(clock.now, 10**9, "send")  # not emulated: never waits
    assert len(clock.slept) == 1 and Link(LinkConfig()).min_seconds(10**9) == 0.0
    assert link.min_seconds(100_000, hops=3) == pytest.approx(0.1 + 3 * 0.03)


def test_a_ring_all_reduce_charges_each_site_2_n_minus_1_over_n_and_the_link_model_is_checked():
    assert ring_allreduce(3000, 3) == (4000, 2)  # reduce-scatter + all-gather: 2(n-1) chunks of B/n, n-1 hops each way
    assert ring_allreduce(3000, 2) == (3000, 1)  # two sites: what the star through the hub charged
    assert ring_allreduce(3000, 1) == (0, 0)  # a site alone all-reduces with nobody
    log = TransferLog()
    log.add(0.1, 10.0, 10.11)
    log.add(0.2, 20.0, 20.19)
    log.add(0.1, 30.0, 30.15)
    log.add(0.0, 40.0, 47.0)  # an unemulated link has no model to be wrong about
    out = log.summary()
    assert out["link_model_transfers"] == 3
    assert out["link_model_median_error"] == pytest.approx(0.1) and out["link_model_max_error"] == pytest.approx(0.5)
    assert TransferLog().summary()["link_model_median_error"] is None


def test_int8_packets_are_four_times_smaller_and_error_feedback_does_not_drift():
    torch.manual_seed(0)
    x = torch.randn(1000) * torch.linspace(0.01, 3, 1000)
    packet = encode(x, "int8", block=256)
    assert packet.nbytes == 1000 + 4 * 4  # one byte per value, one fp32 scale per block of 256
    assert 4 * 1000 / packet.nbytes > 3.9
    half_step = torch.nn.functional.pad(x.abs(), (0, 24)).view(4, 256).amax(dim=1) / 127 / 2
    assert ((decode(packet) - x).abs() <= half_step.repeat_interleave(256)[:1000] + 1e-6).all()
    plain, fed = Encoder("int8", 64), Encoder("int8", 64, feedback=True)
    small = torch.full((64,), 1e-3)
    small[0] = 1.0  # one large value: every other value rounds to 0 without feedback
    sent_plain = sum(decode(plain(small)) for _ in range(50))
    sent_fed = sum(decode(fed(small)) for _ in range(50))
    assert sent_plain[1:].abs().max() == 0
    torch.testing.assert_close(sent_fed[1:], small[1:] * 50, atol=1 / 127, rtol=0)  # off by at most one message's step


def test_outer_step_is_token_weighted_nesterov_and_sites_can_mirror_it_exactly():
    a, b = torch.full((6,), 1.0), torch.full((6,), 4.0)
    torch.testing.assert_close(weighted_mean([a, b], [300, 100]), torch.full((6,), 1.75))  # 3:1, not 1:1
    with pytest.raises(ValueError, match="nothing to average"):
        weighted_mean([], [])
    from tasks.federated.config import DilocoConfig

    lr, m = 0.7, 0.9
    outer = OuterState(torch.ones(6), DilocoConfig(outer_lr=lr, outer_momentum=m))
    g = weighted_mean([a, b], [300, 100])
    outer.step(g)
    outer.step(g)
    torch.testing.assert_close(outer.params.detach(), 1 - lr * (1 + m) * g - lr * (1 + m + m * m) * g)
    assert outer.version == 2
    for wire in ("bf16", "int8"):  # a site adds the update it received to its copy: bit-identical to the hub
        hub = OuterState(torch.linspace(-1, 1, 600), DilocoConfig(transfer_dtype=wire, error_feedback=True))
        site = hub.params.detach().clone()
        for k in range(3):
            site = site + decode(hub.step(torch.randn(600, generator=torch.Generator().manual_seed(k))))
        assert torch.equal(site, hub.params.detach())


def test_a_joining_worker_starts_from_the_global_parameters_with_fresh_inner_state(ray_module):
    from tasks.llm.sites.worker import SiteWorker

    site = SiteConfig(name="late", link=LinkConfig(**LINK))
    worker = SiteWorker(tiny_cfg(mode="diloco"), byte_source(), site, 0, 0, 1, "cpu", None)
    worker.start(None, 1, None)
    first = worker.train_round(RoundMessage(steps=2, lr_step=0, send=True))
    assert len(first.losses) == 2 and first.tokens == 2 * PER_STEP and first.packet.nbytes == 4 * N_PARAMS
    assert worker.link.stats.bytes_sent == 4 * N_PARAMS
    assert any(opt.state for opt in worker.optimizers)
    global_params = torch.randn(N_PARAMS)
    worker.train_round(RoundMessage(steps=0, lr_step=2, send=False, fresh_inner=True,
                                    params=ray_module.put(encode(global_params, "fp32"))))
    assert torch.equal(torch.cat([p.detach().reshape(-1) for p in worker.params]), global_params)
    assert not any(opt.state for opt in worker.optimizers)
    assert worker.link.stats.bytes_received == 4 * global_params.numel()


def test_diloco_survives_kill_9_takes_a_joiner_and_resumes_with_other_sites(tmp_path, mlflow_store, ray_module):
    """Sites a and b from the start, c from round 2; b's worker process gets SIGKILL in round 2 of 5."""
    import mlflow

    sites = [{"name": "a", "link": LINK}, {"name": "b", "link": LINK}, {"name": "c", "join_round": 2, "link": LINK}]
    cfg = tiny_cfg(mode="diloco", sites=sites, steps=10, diloco={"inner_steps": 2}, eval_every=0, checkpoint_every=4,
                   kill=[{"site": "b", "round": 2}])
    s = run_training(cfg, byte_source(), out_dir=tmp_path / "run")
    assert s["dropped"] == [{"site": "b", "round": 2, "reason": "its worker process died", "missed": [3, 4]}]
    assert [row["b"] for row in s["timeline"]] == ["synced", "synced", "failed", "missed", "missed"]
    assert [row["c"] for row in s["timeline"]] == ["absent", "absent", "synced", "synced", "synced"]
    assert s["sync_rounds"] == 5 and s["val_bpb"] is not None
    n, per_round = s["n_params"], 2 * 4 * 32
    assert s["sites"]["a"]["tokens"] == 5 * per_round and s["sites"]["c"]["tokens"] == 3 * per_round
    assert s["sites"]["c"]["bytes_received"] == 3 * 4 * n  # the full parameters once, then two updates
    a = s["sites"]["a"]  # 5 pseudo-gradients up, 4 updates down, each paced by its link
    assert (a["bytes_sent"], a["bytes_received"], a["transfers"]) == (5 * 4 * n, 4 * 4 * n, 9)
    run = mlflow.get_run(s["mlflow_run_id"])
    assert run.data.tags["site_b_dropped"] == "round 2: its worker process died; missed rounds [3, 4]"
    assert run.data.metrics["site_c_tokens"] == 3 * per_round and run.data.metrics["site_b_failures"] == 1
    artifacts = {f.path for f in mlflow.tracking.MlflowClient().list_artifacts(s["mlflow_run_id"])}
    assert {"membership.csv", "membership.png"} <= artifacts

    more = tiny_cfg(mode="diloco", sites=[{"name": "a"}, {"name": "d"}], steps=14, diloco={"inner_steps": 2},
                    eval_every=0, checkpoint_every=4, resume=True)
    r = run_training(more, byte_source(), out_dir=tmp_path / "run")
    assert r["mlflow_run_id"] == s["mlflow_run_id"] and len(r["history"]) == 14
    assert r["history"][:10] == s["history"]
    assert [row["round"] for row in r["timeline"]] == list(range(7)) and r["timeline"][5]["d"] == "synced"
    assert r["sites"]["d"]["bytes_received"] == 2 * 4 * n  # the global parameters, then one update


def test_ddp_across_sites_goes_on_without_a_killed_site_and_its_replicas_stay_identical(tmp_path, mlflow_store,
                                                                                         ray_module):
    """Three sites pay a ring all-reduce; b is killed in round 2 of 4. Then a resume with a new site d, and c killed
    and back a round later: both start without optimizer state of their own, and must end identical to the rest."""
    cfg = tiny_cfg(mode="ddp", sites=[{"name": "a"}, {"name": "b"}, {"name": "c"}], steps=4, eval_every=0,
                   checkpoint_every=0, register_model=False, kill=[{"site": "b", "round": 2}])
    s = run_training(cfg, byte_source(), out_dir=tmp_path / "ddp")
    assert s["sync_rounds"] == 4 and len(s["history"]) == 4
    assert s["dropped"] == [{"site": "b", "round": 2, "reason": "its worker process died", "missed": [3]}]
    assert s["sites"]["a"]["tokens"] == 4 * PER_STEP and s["sites"]["b"]["tokens"] == 2 * PER_STEP
    assert s["ddp_replicas_identical"] is True  # the survivors a and c hold bit-identical parameters
    grad = 4 * N_PARAMS  # rounds 0-2 all-reduce over 3 sites (2 * 2/3 * B each way), round 3 over the 2 left (B)
    three, two = 2 * 2 * grad // 3, grad
    a = s["sites"]["a"]
    assert (a["bytes_sent"], a["bytes_received"]) == (3 * three + two, 2 * three + 2 * two)
    assert s["link_model_transfers"] == 0  # unemulated links: nothing to check the model against

    sites = [{"name": "a"}, {"name": "c", "rejoin_after": 1}, {"name": "d"}]
    more = tiny_cfg(mode="ddp", sites=sites, steps=7, eval_every=0, checkpoint_every=0, register_model=False,
                    resume=True, kill=[{"site": "c", "round": 4}])
    r = run_training(more, byte_source(), out_dir=tmp_path / "ddp")
    assert len(r["history"]) == 7 and r["history"][:4] == s["history"]
    assert [row["c"] for row in r["timeline"][4:]] == ["failed", "synced", "synced"]
    assert r["sites"]["c"]["rejoined_rounds"] == [5] and r["sites"]["d"]["tokens"] == 3 * PER_STEP
    assert r["ddp_replicas_identical"] is True


def test_sites_config_and_devices():
    from tasks.llm.config import parse_sites
    from tasks.llm.sites.hub import default_schedule

    assert parse_sites("a:2@100/50, b") == [
        {"name": "a", "workers": 2, "link": {"bandwidth_mbps": 100.0, "latency_ms": 50.0}},
        {"name": "b", "workers": 1, "link": {"bandwidth_mbps": 0.0, "latency_ms": 0.0}}]
    moving = tiny_cfg(mode="diloco", sites=[{"name": "a"}, {"name": "b", "join_round": 1, "leave_round": 3}],
                      diloco={"inner_steps": 4})
    assert [rp.steps for rp in default_schedule(moving, 18)] == [
        {"a": 4}, {"a": 4, "b": 4}, {"a": 4, "b": 4}, {"a": 4}, {"a": 2}]  # H=4; the last round takes the rest
    assert [s.name for s in tiny_cfg(mode="diloco", workers=3).site_list()] == ["w0", "w1", "w2"]
    ddp = tiny_cfg(mode="ddp", workers=3)
    assert [(s.name, s.workers) for s in ddp.site_list()] == [("local", 3)] and not ddp.on_hub
    with pytest.raises(ValueError, match="not unique"):
        tiny_cfg(mode="diloco", sites=[{"name": "a"}, {"name": "a"}])
    with pytest.raises(ValueError, match="no worker 0 at site 'z'"):
        tiny_cfg(mode="diloco", sites=[{"name": "a"}], kill=[{"site": "z", "round": 1}])


def test_devices():
    assert resolve_device("cpu") == "cpu"
    if torch.cuda.is_available():
        assert resolve_device("auto") == "cuda"
        return
    assert resolve_device("auto") == "cpu"
    with pytest.raises(InputError, match="device: cuda, but no GPU is visible"):
        run_training(tiny_cfg(device="cuda"), byte_source())
