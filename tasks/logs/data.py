"""What every detector sees: parsed lines, weak labels and the chronological split; no truth.

True labels stay out of `LogData` on purpose: a detector cannot use what it is not given.
Only the supervised upper bound gets them, as a separate argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class LogData:
    seq_tokens: list[tuple[str, ...]]  # distinct token sequences
    seq: np.ndarray  # per line: index into seq_tokens
    template: np.ndarray  # per line: drain cluster id
    node: np.ndarray  # per line: node (or "" when the format has none)
    timestamp: np.ndarray  # per line: epoch seconds, non-decreasing
    weak: np.ndarray  # per line: 0 known normal, 1 unknown (inside a failure window)
    train: np.ndarray  # per line: True for the chronologically first part

    @property
    def n(self) -> int:
        return len(self.seq)


def chronological(parsed: pd.DataFrame) -> pd.DataFrame:
    """Stable sort by time, so the split never mixes past and future."""
    return parsed.sort_values("timestamp", kind="stable").reset_index(drop=True)


def train_mask(n: int, train_fraction: float) -> np.ndarray:
    """True for the chronologically first `train_fraction` of n time-sorted lines."""
    n_train = int(round(n * train_fraction))
    if not 0 < n_train < n:
        raise ValueError(f"train_fraction {train_fraction} leaves an empty train or test part")
    return np.arange(n) < n_train


def prepare(parsed: pd.DataFrame, weak: np.ndarray, train_fraction: float) -> LogData:
    """Build a LogData from a chronologically sorted parsed frame and per-line weak labels."""
    if len(parsed) != len(weak):
        raise ValueError(f"{len(parsed)} lines but {len(weak)} weak labels")
    if len(parsed) < 10:
        raise ValueError(f"need at least 10 lines, got {len(parsed)}")
    stamps = parsed["timestamp"].to_numpy(dtype=np.float64)
    if np.any(np.diff(stamps) < 0):
        raise ValueError("lines are not in chronological order; sort with tasks.logs.data.chronological")
    seq_codes, seq_unique = pd.factorize(parsed["tokens"].map(tuple), sort=False)
    train = train_mask(len(parsed), train_fraction)
    nodes = parsed["node"].astype("string").fillna("").to_numpy(dtype=object)
    return LogData(
        seq_tokens=list(seq_unique), seq=seq_codes.astype(np.int64),
        template=parsed["template_id"].to_numpy(dtype=np.int64), node=nodes, timestamp=stamps,
        weak=np.asarray(weak, dtype=np.int8), train=train,
    )


def seq_counts(data: LogData, mask: np.ndarray) -> np.ndarray:
    """Per distinct token sequence: how many of the masked lines carry it."""
    return np.bincount(data.seq[mask], minlength=len(data.seq_tokens)).astype(np.float64)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    keep = weights > 0
    if not keep.any():
        raise ValueError("no known-normal lines to take a quantile from; use a smaller failure window")
    values, weights = values[keep], weights[keep]
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, q * cum[-1], side="left")])


@dataclass
class Detection:
    """One detector's output over all lines (train and test part)."""

    model: str
    scores: np.ndarray  # higher = more anomalous
    predicted: np.ndarray  # 0/1 per line
    threshold: float | None
    train_s: float
    score_s: float
    info: dict
    fitted: Any = field(default=None, repr=False)  # the scoring half: `.score(LogData) -> (scores, predicted)`
