"""Periodic progress lines for long loops: step, loss, throughput, ETA.

Plain lines (not a redrawn bar) so they read the same in a terminal, a Ray worker's log and a
Prefect run log. With `log_file` every line is appended there too: the flow relays that file into
its run log, since a Ray actor's output never reaches Prefect on its own.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, unit: str = "tok", every_s: float = 5.0, stream: TextIO | None = None,
                 log_file: str | Path | None = None):
        self.total, self.label, self.unit, self.every_s = total, label, unit, every_s
        self.stream = stream or sys.stderr
        self.log_file = Path(log_file) if log_file else None
        self.start = self.last_print = time.perf_counter()
        self.done_units = 0

    def say(self, line: str) -> None:
        """Print a line and append it to the log file."""
        print(line, file=self.stream, flush=True)
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_file, "a") as fh:
                fh.write(line + "\n")

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
        self.say(line)
        return line
