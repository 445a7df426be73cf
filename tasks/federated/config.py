"""Typed settings of the round engine's parts, which know nothing of the model trained: the DiLoCo outer step
and its wire, and a site's link."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.common.config import StrictModel


class DilocoConfig(StrictModel):
    inner_steps: int = Field(50, ge=1, description="H: local optimizer steps between synchronisations")
    outer_lr: float = Field(0.7, gt=0)
    outer_momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    transfer_dtype: Literal["fp32", "bf16", "fp16", "int8"] = Field(
        "fp32", description="dtype of pseudo-gradients and outer updates on the wire; int8 has one fp32 scale per block")
    int8_block: int = Field(256, ge=8, description="elements per int8 scale")
    error_feedback: bool = Field(False, description="carry each site's and the hub's quantisation error into its next message")


class LinkConfig(StrictModel):
    """What joins a site to the others: a transfer of B bytes takes at least B / bandwidth + latency."""

    bandwidth_mbps: float = Field(0.0, ge=0, description="Mbit/s; 0 = not emulated (as fast as the transport)")
    latency_ms: float = Field(0.0, ge=0)
