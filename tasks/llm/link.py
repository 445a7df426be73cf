"""Emulated inter-site links: pacing in the transport.

Sites exchange messages through Ray's object store, which on one machine is as fast as memory.
A `Link` makes each transfer take at least bytes / bandwidth + latency: the real transfer runs,
then the sender or receiver sleeps for what is left of the link's time. Wall time and measured
communication time then reflect the link; bytes are counted from the tensors actually sent.
(Real shaping with network namespaces and `tc` needs root and a network between processes,
which Ray's shared-memory store on one node bypasses anyway.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tasks.llm.config import LinkConfig


@dataclass
class LinkStats:
    bytes_sent: int = 0
    bytes_received: int = 0
    seconds: float = 0.0
    transfers: int = 0


class Link:
    def __init__(self, cfg: LinkConfig):
        self.bits_per_s = cfg.bandwidth_mbps * 1e6
        self.latency = cfg.latency_ms / 1e3
        self.stats = LinkStats()

    def min_seconds(self, nbytes: int) -> float:
        """The least time a transfer of `nbytes` may take on this link (0 when not emulated)."""
        wire = 8 * nbytes / self.bits_per_s if self.bits_per_s else 0.0
        return wire + self.latency

    def pace(self, started: float, nbytes: int, direction: str) -> None:
        """End a transfer of `nbytes` begun at `started` (perf_counter) no sooner than the link allows; count it.

        `direction` is 'send' or 'receive'."""
        left = self.min_seconds(nbytes) - (time.perf_counter() - started)
        if left > 0:
            time.sleep(left)
        self.stats.seconds += time.perf_counter() - started
        self.stats.transfers += 1
        if direction == "send":
            self.stats.bytes_sent += nbytes
        else:
            self.stats.bytes_received += nbytes
