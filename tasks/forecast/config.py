"""Typed configuration of the forecasting pipeline (params.yaml section `forecast`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tasks.common.config import StrictModel, check_known_models
from tasks.forecast.models.catalog import MODELS

Rate = Literal["5min", "15min", "1h"]
STUDY_DATASETS = ["IoT", "avazu", "retailrocket", "wiki_de", "wiki_en", "horton", "taxi", "alibaba", "google"]


class TuneConfig(StrictModel):
    num_samples: int = Field(6, ge=1, description="Ray Tune trials per deep model and series")
    max_epochs: int = Field(30, ge=1)
    grace_period: int = Field(4, ge=1, description="ASHA: epochs before a trial may be stopped")
    reduction_factor: int = Field(3, ge=2)
    search: Literal["optuna", "random"] = "optuna"
    lookback: list[int] = [24, 48, 96]
    hidden: list[int] = [16, 32, 64]
    layers: list[int] = [1, 2]
    kernel: list[int] = [3, 5]
    lr_min: float = Field(1e-3, gt=0)
    lr_max: float = Field(1e-2, gt=0)


class ArimaConfig(StrictModel):
    max_p: int = Field(2, ge=0)
    max_q: int = Field(2, ge=0)
    max_d: int = Field(1, ge=0)
    fit_window: int = Field(2000, ge=50)


class GbrConfig(StrictModel):
    lookback: int = Field(24, ge=1)
    max_iter: int = Field(200, ge=1)
    learning_rate: float = Field(0.05, gt=0)


class DeepConfig(StrictModel):
    max_epochs: int = Field(40, ge=1, description="final fit of the tuned configuration")
    patience: int = Field(6, ge=1)
    samples_per_epoch: int = Field(2048, ge=1, description="random training windows per epoch (bounds 5-min cost)")


class EnsembleConfig(StrictModel):
    members: list[str] = ["holt_winters", "gbr"]

    @field_validator("members")
    @classmethod
    def classical_members(cls, members: list[str]) -> list[str]:
        bad = [m for m in members if m not in MODELS or m in ("ensemble", "gru", "cnn")]
        if bad or not members:
            raise ValueError(f"ensemble members must be classical models, got {members}")
        return members


class ForecastConfig(StrictModel):
    datasets: list[str] = Field(default_factory=lambda: list(STUDY_DATASETS))
    rates: list[Rate] = Field(["5min", "15min", "1h"], min_length=1)
    models: list[str] = Field(default_factory=lambda: list(MODELS), min_length=1)
    series_files: list[str] = Field(
        default_factory=list, description="extra series <name>_<rate>.csv / .csv.gz / .parquet, besides the study's files"
    )
    train_fraction: float = Field(0.8, gt=0, lt=1)
    val_fraction: float = Field(0.25, gt=0, lt=1)
    nan_policy: Literal["drop", "interpolate", "error"] = "drop"
    fill_gaps: bool = True
    resample: Literal["none", "sum", "mean"] = Field(
        "none", description="aggregate a series whose own step is finer than its rate and divides it; none refuses"
    )
    seed: int = 0
    out_dir: str = "results/forecast"
    experiment: str = "forecast"
    log_models: bool = True
    arima: ArimaConfig = ArimaConfig()
    gbr: GbrConfig = GbrConfig()
    deep: DeepConfig = DeepConfig()
    ensemble: EnsembleConfig = EnsembleConfig()
    tune: TuneConfig = TuneConfig()

    @field_validator("models")
    @classmethod
    def known_models(cls, models: list[str]) -> list[str]:
        return check_known_models(models, MODELS)
