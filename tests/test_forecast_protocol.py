"""The study's protocol: split, walk-forward combination, metrics, no look-ahead."""

import numpy as np
import pytest

from tasks.forecast.metrics import mase, smape
from tasks.forecast.protocol import HORIZONS, SEASONS, check_length, chronological_split, combine_walk_forward
from tasks.forecast.series import load_series
from tasks.forecast.study import SeriesSpec, run_combo
from tasks.forecast.config import ForecastConfig


def test_split_follows_the_study():
    split = chronological_split(505)
    assert (split.n_train, split.n_test) == (404, 101)
    assert split.n_fit == 404 - 101  # the last 25% of the training part validates deep models


def test_smape_against_hand_computed_values():
    y, yhat = np.array([100.0, 200.0, 0.0]), np.array([110.0, 150.0, 0.0])
    expected = 100 * np.mean([10 / 210, 50 / 350, 0.0])
    assert smape(y, yhat) == pytest.approx(expected)
    assert smape([1.0], [1.0]) == 0.0
    assert mase([2.0, 4.0], [3.0, 3.0], train=[0.0, 1.0, 2.0]) == pytest.approx(1.0)


def test_walk_forward_averages_every_forecast_of_a_point():
    # origin i forecasts test points i, i+1 (fh = 2); value = 10 * origin + step
    forecasts = np.array([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0]])
    assert combine_walk_forward(forecasts).tolist() == [0.0, (1 + 10) / 2, (11 + 20) / 2]


@pytest.mark.parametrize(
    "name, rate, last_observed, last_day",
    [("taxi", "1h", 5.181, 1.459), ("wiki_en", "15min", 1.078, 1.713)],
)
def test_naive_baselines_reproduce_the_published_protocol(shared_data, name, rate, last_observed, last_day):
    spec = SeriesSpec(name, rate, shared_data / "load" / f"{name}_{rate}.csv")
    cfg = ForecastConfig()
    assert run_combo(spec, "last_observed", cfg).metrics["smape"] == pytest.approx(last_observed, abs=5e-4)
    assert run_combo(spec, "last_day", cfg).metrics["smape"] == pytest.approx(last_day, abs=5e-4)


def test_series_too_short_for_season_is_rejected():
    split = chronological_split(60)
    with pytest.raises(ValueError, match="too short"):
        check_length(60, split, HORIZONS["1h"], SEASONS["1h"])


def test_config_defaults_match_protocol_tables():
    assert HORIZONS == {"5min": 1, "15min": 4, "1h": 12}
    assert SEASONS == {"5min": 288, "15min": 96, "1h": 24}


def test_taxi_1h_is_long_enough(shared_data):
    series = load_series(shared_data / "load" / "taxi_1h.csv")
    check_length(len(series), chronological_split(len(series)), 12, 24)
