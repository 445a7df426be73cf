"""Logs the project generates itself, so the logs pipeline runs without public data.

A cluster's routine chatter plus a few failure episodes: during each one, alert lines (new
templates and familiar templates with unusual parameters) appear among the normal ones. Written
in the generic `timestamp,node,message,label` layout (label `-` = normal, else an alert tag).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tasks.common.atomic import write_frame

NORMAL = [
    "session opened for user u{a} by (uid=0)",
    "job {b} completed in {c} ms",
    "heartbeat from node n{a} ok",
    "fetched block {b} from 10.0.{a}.{d} in {c} ms",
    "cron job /usr/bin/rotate-logs finished with status 0",
]
ALERTS = [
    ("KERNPAN", "kernel panic: machine check exception at 0x{h}"),
    ("DISKERR", "I/O error on device sd{x}, sector {b}"),
    ("SLOWJOB", "job {b} completed in {slow} ms"),  # known template, unusual parameter
]


def synthetic_logs(n_lines: int = 4000, episodes: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = 1_700_000_000 + np.cumsum(rng.integers(1, 4, n_lines))
    starts = np.sort(rng.choice(np.arange(n_lines // 10, n_lines - 60), episodes, replace=False))
    in_episode = np.zeros(n_lines, dtype=bool)
    for start in starts:
        in_episode[start : start + 40] = True
    rows = []
    for i in range(n_lines):
        values = dict(a=rng.integers(1, 40), b=rng.integers(1000, 9999), c=rng.integers(5, 90), d=rng.integers(1, 250),
                      h=f"{rng.integers(0, 2**32):08x}", x="abcdef"[rng.integers(0, 6)], slow=rng.integers(50_000, 90_000))
        if in_episode[i] and rng.random() < 0.5:
            tag, template = ALERTS[rng.integers(0, len(ALERTS))]
        else:
            tag, template = "-", NORMAL[rng.integers(0, len(NORMAL))]
        rows.append((int(times[i]), f"n{rng.integers(1, 9)}", template.format(**values), tag))
    return pd.DataFrame(rows, columns=["timestamp", "node", "message", "label"])


def write_synthetic_logs(path: Path) -> Path:
    if not path.exists():
        write_frame(path, synthetic_logs())
    return path
