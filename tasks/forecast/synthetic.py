"""A load-like series the project generates itself, so the pipeline runs without public data.

Daily and weekly seasonality, a slow trend and noise, in the study's `date,messages` layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tasks.common.atomic import write_frame

STEPS = {"5min": "5min", "15min": "15min", "1h": "1h"}


def synthetic_load(rate: str, days: int = 21, seed: int = 0) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=int(pd.Timedelta(days=days) / pd.Timedelta(STEPS[rate])), freq=STEPS[rate])
    hours = (index - index[0]) / pd.Timedelta(hours=1)
    rng = np.random.default_rng(seed)
    daily = 0.3 * np.sin(2 * np.pi * (hours / 24 - 0.3))
    weekly = 0.1 * np.sin(2 * np.pi * hours / (24 * 7))
    noise = np.convolve(rng.normal(0, 0.03, len(index)), np.ones(3) / 3, mode="same")
    messages = 100_000 * (1 + daily + weekly + 0.0005 * hours / 24 + noise)
    return pd.DataFrame({"date": index.strftime("%Y-%m-%d %H:%M:%S"), "messages": messages})


def write_synthetic(folder: Path, rates: list[str]) -> list[Path]:
    paths = []
    for rate in rates:
        path = folder / f"synthetic_{rate}.csv"
        if not path.exists():
            write_frame(path, synthetic_load(rate))
        paths.append(path)
    return paths
