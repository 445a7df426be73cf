"""Weak labels from failure windows: outside every window = known normal, inside = unknown.

Windows come from an incidents file (start, end[, node]) or are simulated from the ground
truth the way the PULL/LogLAB papers do: every line within +/- w seconds of a true anomaly
is inside a window. Only simulation reads the true labels; detectors see the weak labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

KNOWN_NORMAL, UNKNOWN = 0, 1


def simulate_windows(timestamps: np.ndarray, labels: np.ndarray, w: float) -> np.ndarray:
    """1 where a line lies within +/- w seconds of any true anomaly, else 0."""
    timestamps = np.asarray(timestamps, dtype=np.float64)
    labels = np.asarray(labels)
    if len(timestamps) != len(labels):
        raise ValueError("timestamps and labels differ in length")
    if np.isnan(timestamps).any():
        raise ValueError("timestamps contain NaN")
    anomalies = np.sort(timestamps[labels == 1])
    if len(anomalies) == 0:
        return np.zeros(len(timestamps), dtype=np.int8)
    # nearest anomaly at or after t - w must be <= t + w
    idx = np.searchsorted(anomalies, timestamps - w, side="left")
    nearest = anomalies[np.minimum(idx, len(anomalies) - 1)]
    inside = (idx < len(anomalies)) & (nearest <= timestamps + w)
    return inside.astype(np.int8)


def read_incidents(path: str | Path) -> pd.DataFrame:
    """Incidents CSV: `start,end` (epoch seconds or dates) and optionally `node`."""
    frame = pd.read_csv(path)
    missing = {"start", "end"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: incidents need columns start,end[,node]; missing {sorted(missing)}")
    for col in ("start", "end"):
        numeric = pd.to_numeric(frame[col], errors="coerce")
        dates = numeric.isna()
        if dates.any():
            parsed = pd.to_datetime(frame.loc[dates, col], errors="coerce", utc=True, format="mixed")
            numeric[dates] = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        if numeric.isna().any():
            rows = frame.index[numeric.isna()].tolist()[:5]
            raise ValueError(f"{path}: unreadable {col!r} in rows {rows}")
        frame[col] = numeric.astype(float)
    if (frame["end"] < frame["start"]).any():
        raise ValueError(f"{path}: an incident ends before it starts (rows {frame.index[frame['end'] < frame['start']].tolist()[:5]})")
    return frame


def incident_windows(timestamps: np.ndarray, nodes: pd.Series | None, incidents: pd.DataFrame) -> np.ndarray:
    """1 where a line falls in an incident's [start, end] (and on its node, when one is given)."""
    timestamps = np.asarray(timestamps, dtype=np.float64)
    inside = np.zeros(len(timestamps), dtype=bool)
    node_values = None if nodes is None else pd.Series(nodes).astype("string").to_numpy()
    for row in incidents.itertuples(index=False):
        hit = (timestamps >= row.start) & (timestamps <= row.end)
        node = getattr(row, "node", None)
        if node is not None and not pd.isna(node) and node_values is not None:
            hit &= node_values == str(node)
        inside |= hit
    return inside.astype(np.int8)
