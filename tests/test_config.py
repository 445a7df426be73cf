"""Typed configuration from params.yaml with overrides: wrong keys and types are clear errors."""

import pytest

from tasks.common.config import ConfigError, load_config, parse_assignments
from tasks.forecast.config import ForecastConfig


def test_params_yaml_forecast_section_loads():
    cfg = load_config(ForecastConfig, "forecast")
    assert cfg.rates == ["5min", "15min", "1h"]
    assert len(cfg.datasets) == 9


def test_overrides_reach_nested_fields():
    cfg = load_config(ForecastConfig, "forecast", parse_assignments(["tune.num_samples=3", "rates=[1h]"]))
    assert cfg.tune.num_samples == 3
    assert cfg.rates == ["1h"]


@pytest.mark.parametrize(
    "override, message",
    [
        ({"tune.num_sample": 3}, "unknown parameter 'forecast.tune.num_sample'"),
        ({"tune.num_samples": "many"}, "forecast.tune.num_samples"),
        ({"rates": ["2h"]}, "forecast.rates.0"),
        ({"models": ["prophet"]}, "unknown models"),
        ({"seed.x": 1}, "not a mapping"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ForecastConfig, "forecast", override)


def test_bad_assignment_syntax():
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_assignments(["tune.num_samples"])


def test_missing_section_and_bad_yaml(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("forecast: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(ForecastConfig, "forecast", params_file=bad)
    bad.write_text("other: {}\n")
    with pytest.raises(ConfigError, match="no section 'forecast'"):
        load_config(ForecastConfig, "forecast", params_file=bad)
