"""Silent data corruption in the trainer: what `sdc.inject` and `sdc.guard` build, and the events table.

Every fault, flag, recompute, skip, rollback and DiLoCo exclusion is a row (step, rank, event,
detail) of its rank's log. Rank 0's rows go to MLflow as per-step counts `sdc_<event>` (in DDP
every rank acts together, so they are all of them); after the run every rank's rows make
`sdc_events.csv` in the run folder, an MLflow artifact, and the summary counts the steps with
each event on any worker (`sdc_<event>_steps`) beside rank 0's `sdc_guard_seconds`. With both
parts off nothing is built at all.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import torch

from tasks.common.atomic import write_text
from tasks.llm.config import PretrainConfig
from tasks.llm.sdc_guard import StepGuard
from tasks.llm.sdc_inject import Injector

EVENTS = ("fault", "flag", "recompute", "skip", "rollback", "outer_exclude")
COLUMNS = ("step", "rank", "event", "detail")


class EventLog:
    """This rank's rows, and the seconds its guard spent checking steps (its cost, measured where it runs)."""

    def __init__(self, rank: int):
        self.rank, self.rows, self.reported, self.seconds = rank, [], 0, 0.0

    def add(self, step: int, event: str, detail: str = "") -> None:
        self.rows.append({"step": step, "rank": self.rank, "event": event, "detail": detail})

    def summary(self) -> dict:
        return {"sdc_events": self.rows, "sdc_guard_seconds": self.seconds}

    def step_metrics(self) -> dict[str, int]:
        """Counts of the rows added since the last call, as MLflow metrics `sdc_<event>`."""
        new, self.reported = self.rows[self.reported:], len(self.rows)
        return dict(Counter(f"sdc_{row['event']}" for row in new))


def attach(model: torch.nn.Module, optimizers: list, cfg: PretrainConfig, rank: int, dtype: torch.dtype,
           shared: bool) -> tuple[EventLog | None, Injector | None, StepGuard | None]:
    """This rank's event log, injector (on the faulty rank only) and guard; all None with both parts off.

    `shared`: the rank's process group steps together (DDP), so one rank's flag is everyone's."""
    inject, guard = cfg.sdc.inject, cfg.sdc.guard
    if not (inject.enabled or guard.enabled):
        return None, None, None
    log = EventLog(rank)
    injector = Injector(model, inject, dtype, log.add) if inject.enabled and rank == inject.rank else None
    step_guard = StepGuard(guard, optimizers, model, cfg.optim.grad_clip, shared, log) if guard.enabled else None
    return log, injector, step_guard


def write_events(out_dir: str | Path, per_rank: list[list[dict]]) -> dict[str, int]:
    """`sdc_events.csv` from every rank's rows; returns the summary's counts of steps per event."""
    rows = sorted((row for rows in per_rank for row in rows), key=lambda row: (row["step"], row["rank"]))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(Path(out_dir) / "sdc_events.csv", buf.getvalue())
    return {f"sdc_{event}_steps": len({row["step"] for row in rows if row["event"] == event}) for event in EVENTS}


def read_events(out_dir: str | Path) -> list[dict]:
    """The rows of a run's `sdc_events.csv` (step and rank as ints)."""
    with open(Path(out_dir) / "sdc_events.csv", newline="") as f:
        return [{**row, "step": int(row["step"]), "rank": int(row["rank"])} for row in csv.DictReader(f)]
