"""Every forecaster on a small real series, its equivalence with statsmodels, and no look-ahead."""

import warnings

import numpy as np
import pytest
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from tasks.forecast.config import ForecastConfig
from tasks.forecast.models import MODELS, FitContext, make_model
from tasks.forecast.models.smoothing import smoothing_states
from tasks.forecast.protocol import chronological_split, combine_walk_forward
from tasks.forecast.metrics import smape
from tasks.forecast.series import load_series
from tasks.forecast.study import model_options

FAST = {"max_epochs": 6, "patience": 3}


@pytest.fixture(scope="module")
def taxi(shared_data):
    y = load_series(shared_data / "load" / "taxi_1h.csv").to_numpy()
    split = chronological_split(len(y))
    return y, split, FitContext(split=split, season=24, horizon=12, seed=0)


def fitted(name, y, ctx):
    options = model_options(name, ForecastConfig(), tuned=None)
    if name in ("gru", "cnn"):
        options.update(FAST)
    model = make_model(name, **options)
    model.fit(y[: ctx.split.n_train], ctx)
    return model


@pytest.mark.parametrize("name", list(MODELS))
def test_model_forecasts_real_series_better_than_last_observed(taxi, name):
    y, split, ctx = taxi
    model = fitted(name, y, ctx)
    origins = np.arange(split.n_train, split.n)
    forecasts = model.forecast(y, origins, 12)
    assert forecasts.shape == (len(origins), 12)
    score = smape(y[split.n_train :], combine_walk_forward(forecasts))
    assert np.isfinite(score)
    assert score <= 5.181 + 0.01  # last observed on this series; SES converges to it (alpha ~ 1)


@pytest.mark.parametrize("name", list(MODELS))
def test_no_look_ahead(taxi, name):
    """Changing values at and after an origin must not change the forecast made from it."""
    y, split, ctx = taxi
    model = fitted(name, y, ctx)
    origin = split.n_train + 30
    leaked = y.copy()
    leaked[origin:] *= 3.0
    before = model.forecast(y, np.array([origin]), 12)
    after = model.forecast(leaked, np.array([origin]), 12)
    np.testing.assert_allclose(after, before, rtol=1e-9, atol=1e-6)


def test_smoothing_recursion_equals_statsmodels(taxi):
    y, split, _ = taxi
    train = y[: split.n_train]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ExponentialSmoothing(train, trend="add", seasonal="mul", seasonal_periods=24,
                                   initialization_method="estimated").fit()
    level, slope, season = smoothing_states(train, dict(res.params), "add", "mul", 24)
    one_step = (np.r_[res.params["initial_level"], level[:-1]] + np.r_[res.params["initial_trend"], slope[:-1]]) * season[: len(train)]
    np.testing.assert_allclose(one_step, res.fittedvalues, rtol=1e-9)


def test_arima_state_update_equals_statsmodels_forecast(taxi):
    y, split, ctx = taxi
    model = fitted("arima", y, ctx)
    origin = split.n_train + 10
    scaled = model.scaler.transform(y)
    reference = model._model(scaled[:origin], model.order).filter(model.params).forecast(12)
    np.testing.assert_allclose(model.forecast(y, np.array([origin]), 12)[0], model.scaler.inverse(reference), rtol=1e-8)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'prophet'"):
        make_model("prophet")
