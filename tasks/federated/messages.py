"""What the coordinator and a worker say to each other in a round: two dataclasses instead of loose dicts.

Large payloads travel as references into the transport (Ray's object store): the worker fetches
each itself, so its link can pace and time the fetch. A field is None when the round has nothing
of that kind to say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Transfer:
    """One paced transfer: the link model's seconds, and its two ends on the wall clock (time.time())."""

    model_s: float
    started_at: float
    ended_at: float | None = None


@dataclass
class RoundMessage:
    """The coordinator's word to one worker for one round (or, with `compute` off, a flush of a DDP gradient)."""

    steps: int = 0
    lr_step: int = 0
    send: bool = True  # reply with this round's pseudo-gradient (a DiLoCo sync round)
    compute: bool = True
    params: Any = None  # reference to the full global parameters (a joining, rejoining or stale worker)
    update: Any = None  # reference to the last outer update, for a worker one version behind (DiLoCo)
    grad: Any = None  # reference to the last step's averaged gradient (DDP across sites)
    grad_ring: int | None = None  # how many sites that gradient's all-reduce spanned (what the link pays)
    ring: int = 1  # how many sites this step's all-reduce spans
    fresh_inner: bool = True  # with `params`: drop the inner optimizer state (it belonged to other parameters)
    sent_at: float | None = None  # wall clock at dispatch, for the link check


@dataclass
class RoundReply:
    """A worker's answer: its losses and tokens, time split and data position; the lead worker of a site adds
    its link counts and transfers and, when asked to send, its packet with the norm and tokens it spans."""

    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    compute_s: float = 0.0
    comm_s: float = 0.0
    position: Any = None
    transfers: list[Transfer] = field(default_factory=list)
    link: dict | None = None
    packet: Any = None  # tasks/federated/wire.py Packet: a pseudo-gradient (DiLoCo) or a gradient (DDP)
    norm: float | None = None
    delta_tokens: int = 0  # tokens the pseudo-gradient spans (every round since the worker's last global parameters)
    outbound: Transfer | None = None  # the packet's transfer; the coordinator stamps its far end
