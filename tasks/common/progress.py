"""Periodic progress lines for long loops: step, loss, throughput, ETA.

Plain lines (not a redrawn bar) so they read the same in a terminal, a Ray worker's log and a
Prefect run log.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, unit: str = "tok", every_s: float = 5.0, stream: TextIO | None = None):
        self.total, self.label, self.unit, self.every_s = total, label, unit, every_s
        self.stream = stream or sys.stderr
        self.start = self.last_print = time.perf_counter()
        self.done_units = 0

    def update(self, step: int, units: int, **values: float) -> str | None:
        """Record `units` processed at `step`; print (and return) a line at most every `every_s` seconds."""
        self.done_units += units
        now = time.perf_counter()
        if now - self.last_print < self.every_s and step < self.total:
            return None
        self.last_print = now
        elapsed = now - self.start
        rate = self.done_units / elapsed if elapsed > 0 else 0.0
        eta = elapsed / max(step, 1) * (self.total - step)
        shown = " ".join(f"{k} {v:.4f}" for k, v in values.items())
        line = f"[{self.label}] step {step}/{self.total} {shown} | {rate:,.0f} {self.unit}/s | ETA {eta:,.0f}s"
        print(line, file=self.stream, flush=True)
        return line
