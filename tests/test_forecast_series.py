"""Series loading: the study's files, other layouts, and clear errors on bad files."""

import numpy as np
import pandas as pd
import pytest

from tasks.forecast.series import SeriesError, load_series, read_series


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_study_file(shared_data):
    series = load_series(shared_data / "load" / "taxi_1h.csv")
    assert len(series) == 505
    assert series.index.is_monotonic_increasing
    assert series.index.freq == pd.Timedelta("1h")
    assert series.iloc[0] == pytest.approx(119716.82999045262)


def test_detects_timestamp_value_layout_and_sorts(tmp_path):
    path = write(tmp_path, "s.csv", "timestamp,value\n2024-01-01 02:00,3\n2024-01-01 00:00,1\n2024-01-01 01:00,2\n")
    series = load_series(path)
    assert series.tolist() == [1.0, 2.0, 3.0]


def test_reads_parquet_with_explicit_columns(tmp_path):
    frame = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=5, freq="15min"), "load": np.arange(5.0)})
    frame.to_parquet(tmp_path / "s.parquet")
    series = load_series(tmp_path / "s.parquet", time_column="when", value_column="load")
    assert series.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("date,messages\n", "no rows"),
        ("when,what\n2024-01-01,1\n2024-01-02,2\n2024-01-03,3\n", "no time column"),
        ("date,messages\n2024-01-01 00:00,1\n2024-01-01 00:00,2\n2024-01-01 01:00,3\n", "duplicate timestamps"),
        ("date,messages\n2024-01-01 00:00,1\n2024-01-01 01:00,2\n2024-01-01 03:00,3\n2024-01-01 04:00,3\n", "irregular spacing"),
        ("date,messages\nyesterday,1\n2024-01-01 01:00,2\n2024-01-01 02:00,3\n", "unparseable timestamps"),
        ("date,messages\n2024-01-01 00:00,1\n2024-01-01 01:00,abc\n2024-01-01 02:00,3\n", "non-numeric .* at line 3"),
        ("date,messages\n2024-01-01 00:00,1\n2024-01-01 01:00,2\n2024-01-01 02:00,1e300\n", "larger than 1e\\+15 .* at line 4"),
        ("date,messages\n2024-01-01 00:00,-inf\n2024-01-01 01:00,2\n2024-01-01 02:00,3\n", "infinite .* first -inf at line 2"),
        ("date,messages\n2024-01-01 00:00,\n2024-01-01 01:00,\n2024-01-01 02:00,\n", "only 0 of 3 steps have a value"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, text, message):
    with pytest.raises(SeriesError, match=message):
        load_series(write(tmp_path, "bad.csv", text))


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(SeriesError, match="not found"):
        load_series(tmp_path / "nope.csv")
    with pytest.raises(SeriesError, match="unsupported file type"):
        load_series(write(tmp_path, "s.txt", "x"))
    with pytest.raises(SeriesError, match="unsupported file type"):
        load_series(write(tmp_path, "s.json.gz", "x"))


def test_gzipped_csv_and_a_truncated_one(tmp_path):
    frame = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=5000, freq="5min"), "messages": np.arange(5000.0)})
    frame.to_csv(tmp_path / "s_5min.csv.gz", index=False)
    assert len(load_series(tmp_path / "s_5min.csv.gz")) == 5000
    whole = (tmp_path / "s_5min.csv.gz").read_bytes()
    (tmp_path / "cut_5min.csv.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SeriesError, match=r"cannot read .*cut_5min\.csv\.gz: .*check that the file is complete"):
        load_series(tmp_path / "cut_5min.csv.gz")


def test_fill_gaps_then_nan_policy(tmp_path):
    path = write(tmp_path, "gap.csv", "date,messages\n2024-01-01 00:00,1\n2024-01-01 01:00,2\n2024-01-01 03:00,4\n2024-01-01 04:00,5\n")
    series, report = read_series(path, fill_gaps=True, nan_policy="interpolate")
    assert series.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert (report.rows, report.filled, report.dropped, report.interpolated) == (4, 1, 0, 1)
    series, report = read_series(path, fill_gaps=True, nan_policy="drop")
    assert series.tolist() == [1.0, 2.0, 4.0, 5.0]
    assert (report.filled, report.dropped, report.interpolated) == (1, 1, 0)
    with pytest.raises(SeriesError, match="missing values"):
        load_series(path, fill_gaps=True, nan_policy="error")


def test_nan_values_are_dropped_by_default(tmp_path):
    path = write(tmp_path, "nan.csv", "date,messages\n2024-01-01 00:00,1\n2024-01-01 01:00,\n2024-01-01 02:00,3\n2024-01-01 03:00,4\n")
    series, report = read_series(path)
    assert series.tolist() == [1.0, 3.0, 4.0]
    assert (report.filled, report.dropped, report.summary()) == (0, 1, "4 rows at 1h; 0 steps filled, 1 dropped, 0 interpolated")
