"""Typed settings of the round engine's parts that know nothing of the model trained (links, for now)."""

from __future__ import annotations

from pydantic import Field

from tasks.common.config import StrictModel


class LinkConfig(StrictModel):
    """What joins a site to the others: a transfer of B bytes takes at least B / bandwidth + latency."""

    bandwidth_mbps: float = Field(0.0, ge=0, description="Mbit/s; 0 = not emulated (as fast as the transport)")
    latency_ms: float = Field(0.0, ge=0)
