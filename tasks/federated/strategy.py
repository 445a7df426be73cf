"""Sync rules: what a round sends each member and what it makes of their replies, in Flower's Strategy shape.

A rule holds the global parameters as one flat fp32 vector and answers two questions per round:
`configure_fit(members)`, the payload each member gets (full parameters, an update, a gradient, or
nothing), and `aggregate_fit(replies, members)`, the global step taken from the replies (and who
was left out, and why). Averages are weighted by tokens, so they need no fixed set of members.
The rules know nothing of the model or the transport: payloads are wire Packets
(tasks/federated/wire.py) that the coordinator puts where its workers can fetch them.

- `DiLoCo`: the outer Nesterov SGD step on the mean pseudo-gradient; a member one outer step behind
  gets the update, one further behind the full parameters.
- `FedAvg`: the global parameters become the token-weighted mean of the members' (DiLoCo with
  outer SGD lr 1 and no momentum, which is what FedAvg's mean of local models is).
- `DDPAcrossSites`: a round per step; the mean gradient goes back with the next message, so
  every replica applies the same step.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from tasks.federated.config import DilocoConfig
from tasks.federated.messages import RoundReply
from tasks.federated.wire import Encoder, Packet, decode, encode


def weighted_mean(vectors: list[torch.Tensor], tokens: list[int]) -> torch.Tensor:
    """Σ w_i v_i with w_i = tokens_i / Σ tokens: a member that processed more data counts for more."""
    total = sum(tokens)
    if not vectors or total <= 0:
        raise ValueError(f"nothing to average: {len(vectors)} vector(s), {total} tokens")
    out = torch.zeros_like(vectors[0])
    for v, n in zip(vectors, tokens):
        out.add_(v, alpha=n / total)
    return out


class OuterState:
    """The global parameters as one flat fp32 vector, the outer optimizer over it and its version
    (the number of outer steps taken), from which a member's copy can be told current or stale."""

    def __init__(self, flat_params: torch.Tensor, cfg: DilocoConfig):
        self.params = torch.nn.Parameter(flat_params.detach().float().clone())
        momentum = cfg.outer_momentum
        self.opt = torch.optim.SGD([self.params], lr=cfg.outer_lr, momentum=momentum,
                                   nesterov=cfg.nesterov and momentum > 0)
        self.encoder = Encoder(cfg.transfer_dtype, cfg.int8_block, cfg.error_feedback)
        self.version = 0

    @torch.no_grad()
    def step(self, pseudo_gradient: torch.Tensor) -> Packet:
        """One outer step; returns the update as sent on the wire (already applied here)."""
        before = self.params.detach().clone()
        self.params.grad = pseudo_gradient
        self.opt.step()
        self.params.grad = None
        update = self.encoder(self.params.detach() - before)
        self.params.copy_(before + decode(update))
        self.version += 1
        return update

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict(), "version": self.version, "residual": self.encoder.residual}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])
        self.version, self.encoder.residual = state["version"], state["residual"]


def finite_only(replies: dict[str, RoundReply]) -> tuple[list[str], dict[str, str]]:
    """The default selection: every reply with a finite pseudo-gradient norm."""
    names = [n for n, rep in replies.items() if rep.packet is not None]
    kept = [n for n in names if math.isfinite(replies[n].norm)]
    return kept, {n: f"pseudo-gradient not finite (norm {replies[n].norm})" for n in names if n not in kept}


class Strategy:
    """A sync rule. A member is anything with a `version`: the outer version its parameters match, -1 when it
    needs all of them; `configure_fit` sets it to what the member will hold after this round's payload.
    `members` map names to members, in the order the coordinator sends."""

    syncs_every_step = False  # DDP: one round per optimizer step, and a gradient pending between rounds

    def __init__(self, flat_params: torch.Tensor, cfg: DilocoConfig):
        self.outer = OuterState(flat_params, cfg)

    @property
    def params(self) -> torch.Tensor:
        return self.outer.params

    @property
    def version(self) -> int:
        return self.outer.version

    def full(self) -> Packet:
        return encode(self.outer.params.detach(), "fp32")

    def configure_fit(self, members: dict) -> dict[str, dict]:
        raise NotImplementedError

    def aggregate_fit(self, replies: dict[str, RoundReply], members: dict) -> dict[str, str]:
        raise NotImplementedError

    def take_pending(self) -> tuple[Packet, int] | None:
        """A global step the members have not applied yet (DDP's averaged gradient); None for the other rules."""
        return None

    def state_dict(self) -> dict:
        return self.outer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.outer.load_state_dict(state)


class DiLoCo(Strategy):
    """`select(replies) -> (kept, {left out: why})` picks the pseudo-gradients to average (default: the finite
    ones; the LLM adds its SDC outer rule). A member whose pseudo-gradient was not finite gets the full
    parameters next; if every one was, the global parameters stay as they were."""

    def __init__(self, flat_params: torch.Tensor, cfg: DilocoConfig,
                 select: Callable[[dict[str, RoundReply]], tuple[list[str], dict[str, str]]] = finite_only):
        super().__init__(flat_params, cfg)
        self.select, self.last_update = select, None

    def configure_fit(self, members: dict) -> dict[str, dict]:
        full = functools.cache(self.full)  # one packet of the parameters per round, however many members need it
        return {name: self._payload(m, full) for name, m in members.items()}

    def _payload(self, member, full: Callable[[], Packet]) -> dict[str, Packet]:
        if member.version == self.outer.version - 1 and self.last_update is not None:
            payload = {"update": self.last_update}
        elif member.version != self.outer.version:
            payload = {"params": full()}
        else:
            payload = {}
        member.version = self.outer.version
        return payload

    def aggregate_fit(self, replies: dict[str, RoundReply], members: dict) -> dict[str, str]:
        names, left_out = self.select(replies)
        for n in left_out:
            if not math.isfinite(replies[n].norm):
                members[n].version = -1
        if names:
            mean = weighted_mean([decode(replies[n].packet) for n in names], [replies[n].delta_tokens for n in names])
            self.last_update = self.outer.step(mean)
        return left_out


class FedAvg(DiLoCo):
    """McMahan et al.'s FedAvg: the new global model is the weighted mean of the members' local models."""

    def __init__(self, flat_params: torch.Tensor, transfer_dtype: str = "fp32", select=finite_only):
        super().__init__(flat_params, DilocoConfig(outer_lr=1.0, outer_momentum=0.0, nesterov=False,
                                                   transfer_dtype=transfer_dtype), select)


class DDPAcrossSites(Strategy):
    """Every member computes one step's gradient; their token-weighted mean (`pending`) rides on the next
    round's messages, or is applied with a flush before an evaluation, a checkpoint, a rejoin or the end."""

    syncs_every_step = True

    def __init__(self, flat_params: torch.Tensor, cfg: DilocoConfig):
        super().__init__(flat_params, cfg)
        self.pending: tuple[Packet, int] | None = None

    def configure_fit(self, members: dict) -> dict[str, dict]:
        """Full parameters for a member that has none; the pending gradient for all, sent once."""
        pending, full = self.take_pending(), functools.cache(self.full)
        payloads = {}
        for name, m in members.items():
            payloads[name] = {"grad": pending[0], "grad_ring": pending[1]} if pending is not None else {}
            if m.version < 0:
                payloads[name]["params"] = full()
                m.version = 0
        return payloads

    def aggregate_fit(self, replies: dict[str, RoundReply], members: dict) -> dict[str, str]:
        names = list(replies)
        mean = weighted_mean([decode(replies[n].packet) for n in names], [replies[n].tokens for n in names])
        self.pending = encode(mean, "fp32"), len(names)
        return {}

    def take_pending(self) -> tuple[Packet, int] | None:
        pending, self.pending = self.pending, None
        return pending

    @torch.no_grad()
    def adopt(self, replica_params: torch.Tensor) -> None:
        """Every replica holds the same parameters after a flush: the rule keeps a copy (for eval, checkpoints)."""
        self.outer.params.copy_(replica_params)
