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


def _disagreements(model, values: dict, where: str, defaults=None) -> list[str]:
    """Keys whose params.yaml value differs from the typed model's default (nested sections too:
    `defaults` is the parent's default instance of a nested section)."""
    from pydantic import BaseModel

    out = []
    for key, value in values.items():
        field = model.model_fields.get(key)
        if field is None:
            out.append(f"{where}.{key}: not a field of {model.__name__}")
            continue
        if field.is_required():
            continue
        default = getattr(defaults, key) if defaults is not None else field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel) and isinstance(value, dict):
            out += _disagreements(type(default), value, f"{where}.{key}", default)
            continue
        if (list(default) if isinstance(default, tuple) else default) != value:
            out.append(f"{where}.{key}: params.yaml {value!r}, {model.__name__} default {default!r}")
    return out


def test_params_yaml_and_typed_defaults_agree():
    """params.yaml owns the values, the models their types and bounds: a default must not say otherwise."""
    from tasks.common.config import read_params, section_of
    from tasks.llm.config import EvalConfig, MidtrainConfig, PretrainConfig, SftConfig, StudyConfig, TokenizerConfig
    from tasks.logs.config import LogsConfig

    sections = {"forecast": ForecastConfig, "logs": LogsConfig, "llm.tokenizer": TokenizerConfig,
                "llm.pretrain": PretrainConfig, "llm.midtrain": MidtrainConfig, "llm.sft": SftConfig,
                "llm.eval": EvalConfig}
    params = read_params()
    problems = [p for section, model in sections.items() for p in _disagreements(model, section_of(params, section), section)]
    study = section_of(params, "llm.study")
    problems += _disagreements(StudyConfig, {k: v for k, v in study.items() if k not in ("pretrain", "midtrain", "sft", "eval")},
                               "llm.study")
    assert not problems, "\n".join(problems)


def test_one_override_syntax_at_every_depth():
    from tasks.llm.config import PretrainConfig, StudyConfig

    dotted = load_config(StudyConfig, "llm.study", {"pretrain.diloco.inner_steps": 5, "pretrain.n_kv_head": 1})
    nested = load_config(StudyConfig, "llm.study", {"pretrain": {"diloco.inner_steps": 5, "n_kv_head": 1}})
    assert dotted.pretrain == nested.pretrain and dotted.pretrain["steps"] == 300  # merged, not replaced
    stage = load_config(PretrainConfig, "llm.pretrain", dotted.pretrain)
    assert stage.diloco.inner_steps == 5 and stage.n_kv_head == 1 and stage.diloco.outer_lr == 0.7
    as_mapping = load_config(PretrainConfig, "llm.pretrain", {"diloco": {"inner_steps": 7}})
    assert as_mapping.diloco.inner_steps == 7 and as_mapping.diloco.outer_momentum == 0.9
    with pytest.raises(ConfigError, match="unknown parameter 'llm.pretrain.diloco.nope'"):
        load_config(PretrainConfig, "llm.pretrain", {"diloco": {"nope": 1}})
