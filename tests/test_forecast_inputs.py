"""Input checks before any training: where series come from, their rate, their values, and what loading changed."""

import logging

import numpy as np
import pandas as pd
import pytest

from tasks.common.errors import InputError
from tasks.forecast.config import ForecastConfig
from tasks.forecast.report import write_outputs
from tasks.forecast.series import SeriesError, read_series
from tasks.forecast.study import ComboResult, check_inputs, resolve_series, run_combo


def write_series(path, freq="1h", n=120, values=None, start="2024-01-01"):
    """A load-like daily pattern at `freq` in the study's layout; the suffix picks CSV, gzipped CSV or Parquet."""
    index = pd.date_range(start, periods=n, freq=freq)
    if values is None:
        hours = (index - index[0]) / pd.Timedelta(hours=1)
        values = 100 + 10 * np.sin(2 * np.pi * hours / 24) + np.arange(n) % 3
    frame = pd.DataFrame({"date": index.strftime("%Y-%m-%d %H:%M:%S"), "messages": values})
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


def extra(path, **options):
    """A config that runs only this extra series."""
    return ForecastConfig(datasets=[], series_files=[str(path)], **options)


# 1. sampling rate: inferred from the timestamps, checked against the name, resampled on request


def test_rate_in_name_must_match_timestamps(tmp_path):
    path = write_series(tmp_path / "taxi_1h.csv", freq="30min", n=240)
    with pytest.raises(SeriesError, match=r"taxi_1h\.csv: timestamps are 30min apart but the series is named for 1h; "
                                          r"set forecast\.resample to sum or mean"):
        check_inputs(extra(path), None)


@pytest.mark.parametrize("how, first", [("sum", 100 + 100 + 1), ("mean", (100 + 100 + 1) / 2)])
def test_resample_aggregates_a_finer_series(tmp_path, how, first):
    values = np.r_[100.0, 101.0, 100.0 + np.arange(238) % 7]
    path = write_series(tmp_path / "taxi_1h.csv", freq="30min", n=240, values=values)
    [spec] = check_inputs(extra(path, resample=how), None)
    assert (spec.report.step, spec.report.rate, spec.report.resampled) == ("30min", "1h", how)
    series, _ = read_series(path, rate="1h", resample=how)
    assert series.index.freq == pd.Timedelta("1h") and len(series) == 120
    assert series.iloc[0] == pytest.approx(first)


def test_resample_cuts_partial_edge_steps_and_reports_inner_gaps(tmp_path):
    path = write_series(tmp_path / "s_1h.csv", freq="30min", n=9, start="2024-01-01 00:30")
    text = path.read_text().splitlines()
    path.write_text("\n".join(text[:4] + text[5:]) + "\n")  # 02:00 missing
    series, report = read_series(path, fill_gaps=True, rate="1h", resample="sum")
    assert series.index[0] == pd.Timestamp("2024-01-01 01:00") and len(series) == 3
    assert (report.filled, report.dropped) == (1, 1)


@pytest.mark.parametrize(
    "freq, rate, message",
    [("1h", "15min", "named for 15min; resample only aggregates a finer series"),
     ("25min", "1h", "25min apart .* whose step divides the rate")],
)
def test_resample_cannot_upsample_or_split_steps(tmp_path, freq, rate, message):
    path = write_series(tmp_path / f"s_{rate}.csv", freq=freq, n=400)
    with pytest.raises(SeriesError, match=message):
        check_inputs(extra(path, resample="sum"), None)


@pytest.mark.parametrize("name", ["web_1h.csv.gz", "web_1h.parquet"])
def test_extra_series_may_be_gzipped_or_parquet(tmp_path, name):
    [spec] = check_inputs(extra(write_series(tmp_path / name)), None)
    assert (spec.dataset, spec.rate, spec.report.rows) == ("web", "1h", 120)


def test_study_files_may_be_gzipped_or_parquet(tmp_path):
    write_series(tmp_path / "load" / "taxi_1h.csv.gz")
    write_series(tmp_path / "load" / "wiki_en_1h.parquet")
    specs = check_inputs(ForecastConfig(datasets=["taxi", "wiki_en"], rates=["1h"]), str(tmp_path))
    assert [s.path.name for s in specs] == ["taxi_1h.csv.gz", "wiki_en_1h.parquet"]


@pytest.mark.parametrize("name", ["web_2h.csv", "web.csv", "web_1h.json"])
def test_extra_series_names_must_carry_a_rate(tmp_path, name):
    with pytest.raises(InputError, match=rf"{name}: forecast\.series_files entries must be named <name>_<rate>"):
        resolve_series(extra(tmp_path / name))


def test_same_series_twice_is_refused(tmp_path):
    path = write_series(tmp_path / "web_1h.csv")
    with pytest.raises(InputError, match="series web_1h given more than once"):
        resolve_series(ForecastConfig(datasets=[], series_files=[str(path), str(path)]))


# 2. values: nothing non-finite in the data or in the outputs


def test_huge_value_is_refused_with_its_line(tmp_path):
    values = np.full(120, 100.0) + np.arange(120)
    values[7] = 1e300
    path = write_series(tmp_path / "web_1h.csv", values=values)
    with pytest.raises(SeriesError, match=r"web_1h\.csv: 1 values in 'messages' are infinite or larger than 1e\+15 "
                                          r"in magnitude, first 1e\+300 at line 9"):
        check_inputs(extra(path), None)


def result_with(metrics):
    return ComboResult("web", "1h", "last_observed", "deterministic", metrics, {}, [], np.zeros(1), np.zeros(1))


def test_outputs_refuse_non_finite_metrics(tmp_path):
    fine = result_with({"smape": 1.0, "mae": 1.0, "rmse": 1.0, "mase": 1.0})
    broken = result_with({"smape": 1.0, "mae": 1.0, "rmse": float("inf"), "mase": 1.0})
    broken.model = "ses"
    with pytest.raises(FloatingPointError, match="rmse is inf for ses on web_1h"):
        write_outputs([fine, broken], tmp_path)
    assert not (tmp_path / "leaderboard.csv").exists()


def test_constant_training_part_is_refused(tmp_path):
    path = write_series(tmp_path / "flat_1h.csv", values=np.full(120, 5.0))
    with pytest.raises(SeriesError, match=r"flat_1h\.csv: the training part .* is constant at 5"):
        check_inputs(extra(path), None)


# 3. gaps: every filled, dropped or interpolated step is counted and reported


@pytest.mark.parametrize("policy, dropped, interpolated, n", [("drop", 2, 0, 118), ("interpolate", 0, 2, 120)])
def test_gap_counts_reach_the_leaderboard_and_params(tmp_path, policy, dropped, interpolated, n):
    path = write_series(tmp_path / "web_1h.csv")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:50] + lines[52:]) + "\n")  # two hours missing
    cfg = extra(path, nan_policy=policy)
    [spec] = check_inputs(cfg, None)
    assert (spec.report.filled, spec.report.dropped, spec.report.interpolated) == (2, dropped, interpolated)
    result = run_combo(spec, "last_observed", cfg)
    row = result.row()
    assert (row["steps_filled"], row["steps_dropped"], row["steps_interpolated"]) == (2, dropped, interpolated)
    assert result.params["rows_read"] == 118 and result.params["native_step"] == "1h"
    assert result.params["n_train"] + result.params["n_test"] == n


def test_flow_logs_what_loading_changed(tmp_path, caplog):
    from flows.forecast import log_inputs

    path = write_series(tmp_path / "web_1h.csv")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:50] + lines[51:]) + "\n")
    specs = check_inputs(extra(path), None)
    logger = logging.getLogger("test_forecast_inputs")
    logger.addHandler(caplog.handler)  # Prefect's logging setup may keep records from reaching the root logger
    try:
        log_inputs(logger, specs)
    finally:
        logger.removeHandler(caplog.handler)
    assert "series web_1h" in caplog.text and "119 rows at 1h; 1 steps filled, 1 dropped, 0 interpolated" in caplog.text


# 4. where series come from: named datasets must exist; generated series only without a data folder


def test_missing_datasets_name_the_folder_searched(tmp_path):
    write_series(tmp_path / "load" / "taxi_1h.csv")
    with pytest.raises(InputError, match=r"series wiki_en_1h not found in .*load \(looked for .* datasets there: taxi\); "
                                         r"check forecast.datasets .* the folder that contains load/"):
        resolve_series(ForecastConfig(datasets=["taxi", "wiki_en"], rates=["1h"]), str(tmp_path))


def test_data_dir_pointing_at_load_itself_is_an_error(tmp_path):
    write_series(tmp_path / "load" / "taxi_1h.csv")
    with pytest.raises(InputError, match=r"taxi_1h not found: .*load/load does not exist; --data-dir / SEEDFLOW_DATA "
                                         r"must be the folder that contains load/"):
        resolve_series(ForecastConfig(datasets=["taxi"], rates=["1h"]), str(tmp_path / "load"))


def test_generated_series_only_without_any_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SEEDFLOW_ROOT", str(tmp_path / "project"))  # ../shared/datasets does not exist there
    monkeypatch.delenv("SEEDFLOW_DATA", raising=False)
    [spec] = resolve_series(ForecastConfig(datasets=["taxi"], rates=["1h"]))
    assert spec.generated and spec.path == tmp_path / "project" / "seeds" / "load" / "synthetic_1h.csv"
    assert spec.path.is_file()


# 5. raw errors turned into messages that name the file


def test_no_series_at_all_is_an_input_error():
    with pytest.raises(InputError, match="no series to run: forecast.datasets is empty and no series_files given"):
        resolve_series(ForecastConfig(datasets=[]))


def test_too_short_after_dropping_names_the_file(tmp_path):
    values = np.full(120, np.nan)
    values[:40] = np.arange(40.0)
    path = write_series(tmp_path / "web_1h.csv", values=values)
    with pytest.raises(SeriesError, match=r"web_1h\.csv: series of 40 points is too short.*120 rows at 1h; "
                                          r"0 steps filled, 80 dropped"):
        check_inputs(extra(path), None)


def test_validation_part_must_hold_a_horizon_for_deep_models(tmp_path):
    path = write_series(tmp_path / "web_1h.csv")
    assert check_inputs(extra(path, val_fraction=0.05, models=["last_observed"]), None)
    with pytest.raises(SeriesError, match=r"web_1h\.csv: the validation part .* raise forecast\.val_fraction"):
        check_inputs(extra(path, val_fraction=0.05, models=["gru"]), None)
