"""The load-prediction study's evaluation protocol, exactly.

Chronological split (first int(0.8 n) points train), deep models validate on the last 25% of
the training part, min-max scaling fit on the training part only, and walk-forward over the
test part: from every origin i (the model has seen everything before test point i) forecast fh
steps; the prediction scored for a test point is the mean of every forecast made for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HORIZONS = {"5min": 1, "15min": 4, "1h": 12}
SEASONS = {"5min": 288, "15min": 96, "1h": 24}


@dataclass(frozen=True)
class Split:
    n_train: int
    n_fit: int  # deep models fit on [0, n_fit) and validate on [n_fit, n_train)
    n: int

    @property
    def n_test(self) -> int:
        return self.n - self.n_train


def chronological_split(n: int, train_fraction: float = 0.8, val_fraction: float = 0.25) -> Split:
    n_train = int(train_fraction * n)
    n_fit = n_train - int(round(val_fraction * n_train))
    if not 0 < n_fit < n_train < n:
        raise ValueError(f"a series of {n} points cannot be split {train_fraction}/{val_fraction}")
    return Split(n_train=n_train, n_fit=n_fit, n=n)


def check_length(n: int, split: Split, horizon: int, season: int, validates: bool = False) -> None:
    """Reject series too short for the chosen horizon and season (and, for deep models, validation)."""
    if split.n_fit < 2 * season or split.n_test < horizon:
        raise ValueError(
            f"series of {n} points is too short: need at least two seasons ({2 * season}) in the fitting "
            f"part (has {split.n_fit}) and one horizon ({horizon}) in the test part (has {split.n_test}); "
            f"use a longer series or leave this rate out"
        )
    if validates and split.n_train - split.n_fit < horizon:
        raise ValueError(
            f"the validation part of the deep models has {split.n_train - split.n_fit} points, less than one "
            f"horizon ({horizon}); raise forecast.val_fraction"
        )


@dataclass(frozen=True)
class MinMaxScaler:
    low: float
    high: float

    @classmethod
    def fit(cls, train: np.ndarray) -> "MinMaxScaler":
        low, high = float(np.min(train)), float(np.max(train))
        return cls(low, high if high > low else low + 1.0)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=float) - self.low) / (self.high - self.low)

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float) * (self.high - self.low) + self.low


def combine_walk_forward(origin_forecasts: np.ndarray) -> np.ndarray:
    """Mean of all forecasts per test point.

    origin_forecasts[i, h] forecasts test point i + h from origin i (history = everything
    before test point i). Test point j gets mean over h of origin_forecasts[j - h, h] for the
    origins j - h >= 0, so the first points average fewer forecasts.
    """
    n_test, fh = origin_forecasts.shape
    total = np.zeros(n_test)
    count = np.zeros(n_test)
    for h in range(fh):
        total[h:] += origin_forecasts[: n_test - h, h]
        count[h:] += 1
    return total / count
