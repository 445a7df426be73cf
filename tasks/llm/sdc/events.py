"""The SDC events table: every fault, flag, recompute, skip, rollback and DiLoCo exclusion is a row
(step, rank, event, detail) of its rank's log; after a run every rank's rows make `sdc_events.csv`."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

from tasks.common.atomic import write_text

EVENTS = ("fault", "flag", "recompute", "skip", "rollback", "outer_exclude")
COLUMNS = ("step", "rank", "event", "detail")


class EventLog:
    """This rank's rows, and the seconds its guard spent checking steps (its cost, measured where it runs)."""

    def __init__(self, rank: int):
        self.rank, self.rows, self.reported, self.seconds = rank, [], 0, 0.0
        self.trace: list[dict] = []  # a recording guard's statistics of every step

    def add(self, step: int, event: str, detail: str = "") -> None:
        self.rows.append({"step": step, "rank": self.rank, "event": event, "detail": detail})

    def summary(self) -> dict:
        return {"sdc_events": self.rows, "sdc_guard_seconds": self.seconds, **({"sdc_trace": self.trace} if self.trace
                                                                                else {})}

    def step_metrics(self) -> dict[str, int]:
        """Counts of the rows added since the last call, as MLflow metrics `sdc_<event>`."""
        new, self.reported = self.rows[self.reported:], len(self.rows)
        return dict(Counter(f"sdc_{row['event']}" for row in new))


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
