"""Failure windows on hand-made timestamps: simulated from labels and read from incidents."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.logs.windows import incident_windows, read_incidents, simulate_windows


def test_simulated_windows_hand_made():
    t = np.array([0, 5, 9, 10, 11, 15, 30, 40, 49, 50], dtype=float)
    y = np.array([0, 0, 0, 1, 0, 0, 0, 0, 0, 1])
    assert simulate_windows(t, y, 0).tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    assert simulate_windows(t, y, 1).tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 1, 1]
    assert simulate_windows(t, y, 5).tolist() == [0, 1, 1, 1, 1, 1, 0, 0, 1, 1]
    assert simulate_windows(t, y, 100).tolist() == [1] * 10
    assert simulate_windows(t, np.zeros(10), 100).sum() == 0
    with pytest.raises(ValueError):
        simulate_windows(t, y[:3], 1)


def test_incident_windows_with_and_without_node(tmp_path):
    path = tmp_path / "incidents.csv"
    pd.DataFrame({"start": [10, "1970-01-01 00:00:40"], "end": [12, "1970-01-01 00:00:45"], "node": ["n1", None]}).to_csv(path, index=False)
    incidents = read_incidents(path)
    assert incidents["start"].tolist() == [10.0, 40.0]
    t = np.array([9, 10, 11, 11, 12, 13, 40, 44, 46], dtype=float)
    nodes = pd.Series(["n1", "n1", "n1", "n2", "n1", "n1", "n2", "n3", "n1"])
    assert incident_windows(t, nodes, incidents).tolist() == [0, 1, 1, 0, 1, 0, 1, 1, 0]


def test_bad_incidents(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("begin,end\n1,2\n")
    with pytest.raises(ValueError, match="start"):
        read_incidents(path)
    path.write_text("start,end\n5,2\n")
    with pytest.raises(ValueError, match="ends before"):
        read_incidents(path)
    path.write_text("start,end\nyesterday-ish,2\n")
    with pytest.raises(ValueError, match="unreadable"):
        read_incidents(path)
