"""Emulated inter-site links: pacing in the transport, and the link model it is checked against.

Sites exchange messages through Ray's object store, which on one machine is as fast as memory.
A `Link` makes each transfer take at least bytes / bandwidth + latency (per hop): the real
transfer runs, then the sender or receiver sleeps for what is left of the link's time. Wall time
and measured communication time then reflect the link; bytes are counted as the modelled
collective moves them. (Real shaping with network namespaces and `tc` needs root and a network
between processes, which Ray's shared-memory store on one node bypasses anyway.)

Because the padding enforces the model's time, the time measured around it cannot disagree with
the model. `TransferLog` is the check that can: the hub and the site stamp each transfer's two ends
on the wall clock (`time.time()`, not the `perf_counter` the padding uses), and the error of the
model against that is what the summary reports. It includes what the model leaves out (Ray's
dispatch, serialisation, a hub busy with another site); on one machine both ends share a clock.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from tasks.federated.config import LinkConfig


@dataclass
class LinkStats:
    bytes_sent: int = 0
    bytes_received: int = 0
    seconds: float = 0.0
    transfers: int = 0


def ring_allreduce(nbytes: int, members: int) -> tuple[int, int]:
    """What each of `members` workers sends (and as much receives) in a ring all-reduce of `nbytes`, and
    the latency hops each direction takes: reduce-scatter then all-gather, 2(n-1) chunks of nbytes / n."""
    return 2 * (members - 1) * nbytes // members, members - 1


class Link:
    def __init__(self, cfg: LinkConfig):
        self.bits_per_s = cfg.bandwidth_mbps * 1e6
        self.latency = cfg.latency_ms / 1e3
        self.stats = LinkStats()

    def min_seconds(self, nbytes: int, hops: int = 1) -> float:
        """The least time a transfer of `nbytes` in `hops` latency hops may take here (0 when not emulated)."""
        wire = 8 * nbytes / self.bits_per_s if self.bits_per_s else 0.0
        return wire + hops * self.latency

    def pace(self, started: float, nbytes: int, direction: str, hops: int = 1) -> None:
        """End a transfer of `nbytes` begun at `started` (perf_counter) no sooner than the link allows; count it.

        `direction` is 'send' or 'receive'."""
        left = self.min_seconds(nbytes, hops) - (time.perf_counter() - started)
        if left > 0:
            time.sleep(left)
        self.stats.seconds += time.perf_counter() - started
        self.stats.transfers += 1
        if direction == "send":
            self.stats.bytes_sent += nbytes
        else:
            self.stats.bytes_received += nbytes


class TransferLog:
    """Each emulated transfer's modelled seconds and the seconds between its ends on the wall clock."""

    def __init__(self):
        self.model_s: list[float] = []
        self.measured_s: list[float] = []

    def add(self, model_s: float, started_at: float, ended_at: float) -> None:
        if model_s > 0:  # an unemulated link has no model to check
            self.model_s.append(model_s)
            self.measured_s.append(ended_at - started_at)

    def errors(self) -> list[float]:
        """Relative error of the model per transfer: measured / modelled - 1 (>0: slower than the model)."""
        return [m / s - 1 for s, m in zip(self.model_s, self.measured_s)]

    def summary(self) -> dict:
        errors = self.errors()
        return {"link_model_transfers": len(errors),
                "link_model_median_error": statistics.median(errors) if errors else None,
                "link_model_max_error": max(errors, key=abs) if errors else None}
