"""The round engine on its own: sync rules and the pool, driven by fake workers that are plain Python objects.

Each fake worker minimises 0.5 ||x - c||^2 for its own target c with plain SGD, so every rule's
result has a closed form to check against.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from tasks.federated.config import DilocoConfig
from tasks.federated.messages import RoundReply
from tasks.federated.pool import Member, Pool
from tasks.federated.strategy import DDPAcrossSites, DiLoCo, FedAvg
from tasks.federated.wire import decode, encode


@dataclass
class Site:
    name: str
    workers: int = 1
    leave_round: int = 0
    rejoin_after: int = 0


class QuadraticWorker:
    """A plain-object worker: holds parameters, takes SGD steps on its own quadratic, replies as a site does."""

    def __init__(self, name: str, target: list[float], tokens: int, lr: float = 0.1):
        self.member = Member(Site(name), version=-1)
        self.target, self.tokens, self.lr = torch.tensor(target), tokens, lr
        self.x = self.anchor = None

    def receive(self, payload: dict) -> None:
        """As over a transport: a copy of the payload (an fp32 packet may hold the rule's own tensor)."""
        if "params" in payload:
            self.anchor = decode(payload["params"]).clone()
        elif "update" in payload:
            self.anchor = self.anchor + decode(payload["update"])
        if "params" in payload or "update" in payload:
            self.x = self.anchor.clone()

    def gradient(self) -> torch.Tensor:
        return self.x - self.target

    def train(self, steps: int) -> RoundReply:
        for _ in range(steps):
            self.x = self.x - self.lr * self.gradient()
        delta = self.anchor - self.x
        return RoundReply(losses=[0.0], tokens=self.tokens, packet=encode(delta, "fp32"),
                          norm=torch.linalg.vector_norm(delta).item(), delta_tokens=self.tokens)


def diloco_round(rule, workers: list[QuadraticWorker], steps: int) -> dict[str, str]:
    members = {w.member.name: w.member for w in workers}
    for w, payload in zip(workers, rule.configure_fit(members).values()):
        w.receive(payload)
    return rule.aggregate_fit({w.member.name: w.train(steps) for w in workers}, members)


def workers3() -> list[QuadraticWorker]:
    return [QuadraticWorker("a", [1.0, 0.0], 100), QuadraticWorker("b", [0.0, 2.0], 300),
            QuadraticWorker("c", [-1.0, -1.0], 100)]


def test_fedavg_makes_the_global_model_the_token_weighted_mean_of_the_local_models():
    rule, workers = FedAvg(torch.zeros(2)), workers3()
    diloco_round(rule, workers, steps=5)
    expected = (100 * workers[0].x + 300 * workers[1].x + 100 * workers[2].x) / 500
    torch.testing.assert_close(rule.params.detach(), expected)
    for _ in range(200):
        diloco_round(rule, workers, steps=5)
    # the fixed point of FedAvg on quadratics with equal steps: the weighted mean of the targets
    torch.testing.assert_close(rule.params.detach(), torch.tensor([0.0, 1.0]), atol=1e-4, rtol=0)


def test_diloco_sends_the_update_to_a_member_one_step_behind_and_everything_to_the_others():
    rule, workers = DiLoCo(torch.zeros(2), DilocoConfig(outer_lr=0.7, outer_momentum=0.9)), workers3()
    diloco_round(rule, workers, steps=3)
    a, b, c = (w.member for w in workers)
    c.version = -1  # c lost its parameters (a rejoin)
    payloads = rule.configure_fit({"a": a, "b": b, "c": c})
    assert set(payloads["a"]) == {"update"} and set(payloads["c"]) == {"params"}
    assert a.version == b.version == c.version == rule.version == 1
    workers[0].receive(payloads["a"])
    assert torch.equal(workers[0].x, rule.params.detach())  # the update lands on the global parameters exactly
    assert rule.configure_fit({"a": a}) == {"a": {}}  # current: nothing to send


def test_diloco_leaves_out_non_finite_pseudo_gradients_and_resends_those_sites_everything():
    rule, workers = DiLoCo(torch.zeros(2), DilocoConfig(outer_lr=1.0, outer_momentum=0.0)), workers3()
    members = {w.member.name: w.member for w in workers}
    for w, payload in zip(workers, rule.configure_fit(members).values()):
        w.receive(payload)
    replies = {w.member.name: w.train(4) for w in workers}
    replies["b"].packet, replies["b"].norm = encode(torch.tensor([float("nan"), 0.0]), "fp32"), float("nan")
    left_out = rule.aggregate_fit(replies, members)
    assert list(left_out) == ["b"] and "not finite" in left_out["b"]
    torch.testing.assert_close(rule.params.detach(), (workers[0].x + workers[2].x) / 2)  # a and c, 100 tokens each
    assert members["b"].version == -1 and "params" in rule.configure_fit(members)["b"]

    before = rule.params.detach().clone()
    for rep in replies.values():
        rep.packet, rep.norm = encode(torch.full((2,), float("inf")), "fp32"), float("inf")
    assert sorted(rule.aggregate_fit(replies, members)) == ["a", "b", "c"]
    assert torch.equal(rule.params.detach(), before)  # nothing sound: the global parameters stay
    payloads = rule.configure_fit(members)
    assert all(set(p) == {"params"} for p in payloads.values())
    assert len({id(p["params"]) for p in payloads.values()}) == 1  # one copy of the parameters, put once


def test_ddp_across_sites_applies_the_token_weighted_mean_gradient_everywhere():
    rule, workers = DDPAcrossSites(torch.zeros(2), DilocoConfig()), workers3()
    members = {w.member.name: w.member for w in workers}
    x = torch.zeros(2)
    for step in range(3):
        payloads = rule.configure_fit(members)
        for w, payload in zip(workers, payloads.values()):
            w.receive(payload)
            if "grad" in payload:
                w.x = w.x - 0.1 * decode(payload["grad"])
                assert payload["grad_ring"] == 3
        assert ("params" in payloads["a"]) == (step == 0) and ("grad" in payloads["a"]) == (step > 0)
        assert all(torch.equal(w.x, workers[0].x) for w in workers)  # identical replicas
        torch.testing.assert_close(workers[0].x, x)
        replies = {w.member.name: RoundReply(tokens=w.tokens, packet=encode(w.gradient(), "fp32")) for w in workers}
        assert rule.aggregate_fit(replies, members) == {}
        x = x - 0.1 * (100 * (x - workers[0].target) + 300 * (x - workers[1].target) + 100 * (x - workers[2].target)) / 500
    assert rule.take_pending() is not None and rule.take_pending() is None  # a flush takes it once
    assert rule.configure_fit(members) == {"a": {}, "b": {}, "c": {}}


def test_the_pool_admits_leaves_and_brings_back_sites_at_round_boundaries():
    pool = Pool([Site("a"), Site("b", leave_round=2), Site("c", rejoin_after=2)])
    due = pool.admissions(0, {"a": 5, "b": 5})
    assert [m.name for m in due.starting] == ["a", "b"] and not due.leaving and not due.back
    for m in due.starting:
        m.workers = ["w"]
    c = pool.members["c"]
    assert [m.name for m in pool.admissions(1, {"a": 5, "b": 5, "c": 5}).starting] == ["c"]
    c.workers = ["w"]
    c.fail(1, "its worker process died")
    assert pool.state_of(c, 1, {"c": 5}, replied=False, sync=True) == "failed"
    assert pool.state_of(c, 2, {"c": 5}, replied=False, sync=True) == "missed"
    due = pool.admissions(2, {"a": 5, "b": 5, "c": 5})
    assert [m.name for m in due.leaving] == ["b"] and not due.back  # c is due back after 2 rounds, not 1
    due = pool.admissions(3, {"a": 5, "c": 5})
    assert [m.name for m in due.back] == ["c"]
    pool.rejoined(c, 3)
    assert c.up and c.rejoins == [3] and [m.name for m in pool.active({"a": 5, "c": 5})] == ["a", "c"]
    assert pool.state_of(pool.members["a"], 3, {"a": 5}, replied=True, sync=False) == "local"


@pytest.mark.parametrize("wire", ["fp32", "int8"])
def test_every_diloco_member_holds_the_global_parameters_bit_for_bit_whatever_the_wire(wire):
    rule = DiLoCo(torch.zeros(2), DilocoConfig(transfer_dtype=wire, outer_lr=0.7, outer_momentum=0.9))
    workers = workers3()
    members = {w.member.name: w.member for w in workers}
    for _ in range(4):
        for w, payload in zip(workers, rule.configure_fit(members).values()):
            w.receive(payload)
        assert all(torch.equal(w.anchor, rule.params.detach()) for w in workers)
        rule.aggregate_fit({w.member.name: w.train(2) for w in workers}, members)
