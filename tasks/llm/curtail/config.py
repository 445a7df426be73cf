"""Typed configuration of curtailment-aware training (params.yaml section `llm.curtail`).

Thresholds are in the traces' own unit (`unit`); everything downstream works in kg CO2 per kWh.
The default threshold, 300, lies in the gap between the two modes of the shared CAISO North trace
(solar hours ~40-100, gas on the margin ~380-460): 19% of its samples are below it (its 20th, 25th
and 30th percentiles are 380, 405 and 413, inside the noisy upper mode), a median of 4.3 hours a day.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tasks.common.config import Overrides, StrictModel

Unit = Literal["lbs_per_mwh", "g_per_kwh", "kg_per_kwh"]
PolicyName = Literal["reactive", "forecast"]
KG_PER_KWH = {"lbs_per_mwh": 0.45359237 / 1000, "g_per_kwh": 1e-3, "kg_per_kwh": 1.0}
WATTTIME = "energy/watttime_example.csv"
HISTORY_DAYS = {"last_observed": 0, "ses": 0, "arima": 0, "last_day": 1, "gbr": 1, "holt_winters": 2}  # seasons needed


# Outer lr 1 without momentum: a lone site's local rounds count in full at the next sync (the study's
# "train alone"), and a run that ends on one site ends on its parameters.
CURTAIL_PRETRAIN = {"depth": 2, "sequence_len": 128, "device_batch_size": 8, "compile": False, "threads_per_worker": 1,
                    "diloco.outer_lr": 1.0, "diloco.outer_momentum": 0.0, "eval_every": 500, "eval_tokens": 16384,
                    "checkpoint_every": 500, "log_every": 50}


class SolarConfig(StrictModel):
    """On-site PV: a normalised output trace (0..1) scaled to `peak_kw`; it offsets the site's grid draw."""

    trace: str = Field("energy/solar_example.csv", description="CSV/Parquet, relative to the data dir")
    column: str = Field(..., min_length=1, description="the trace's value column, e.g. 'San Francisco'")
    peak_kw: float = Field(2.0, ge=0, description="PV output in kW at normalised output 1")
    shift_hours: float = Field(0.0, description="circular shift of the trace in time")


class GridSiteConfig(StrictModel):
    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")
    trace: str = Field(WATTTIME, description="MCI trace (CSV/Parquet), relative to the data dir")
    column: str = Field("", description="value column; '' = the trace's only column besides time")
    time_column: str = Field("", description="'' = the first column (datetimes, or seconds since the start)")
    shift_hours: float = Field(0.0, description="circular shift: a reused trace stands for another region")
    gpus: int = Field(4, ge=1, description="the site's size; power scales with gpus / power.per_gpus")
    solar: SolarConfig | None = None


def _default_sites() -> list[GridSiteConfig]:
    return [GridSiteConfig(name=name, shift_hours=shift) for name, shift in
            (("region-a", 0.0), ("region-b", 8.0), ("region-c", 16.0))]


class ForecastPolicyConfig(StrictModel):
    """The forecast policy's model: refit rarely, forecast often from the newest observations."""

    model: str = Field("last_day", description="a tasks/forecast/models registry name: " + ", ".join(HISTORY_DAYS)
                       + " (last_day: the same time yesterday; on the shared trace it hides the provisioning delay "
                         "best for its cost, README)")
    model_options: dict[str, Any] = Field(default_factory=dict, description="the model's constructor options")
    history_hours: float = Field(24.0, gt=0, description="each fit sees this much trace before now "
                                                         "(last_day and gbr need a day, Holt-Winters two)")
    refit_every_s: float = Field(86400.0, gt=0, description="simulated seconds between model fits "
                                                            "(a Holt-Winters fit takes 1-3 s)")
    forecast_every_s: float = Field(300.0, gt=0, description="simulated seconds between forecasts; one forecast "
                                                              "is reused until the next")
    horizon_hours: float = Field(2.0, gt=0, description="forecast length")
    seed: int = 0

    @model_validator(mode="after")
    def usable(self) -> ForecastPolicyConfig:
        if self.model not in HISTORY_DAYS:
            raise ValueError(f"unknown forecast model {self.model!r}; choose from {', '.join(HISTORY_DAYS)}")
        needed = 24 * HISTORY_DAYS[self.model] + (self.horizon_hours if self.model == "gbr" else 0)
        if self.history_hours < needed:
            raise ValueError(f"{self.model} needs history_hours >= {needed:g} (its season is one day)")
        if self.forecast_every_s > self.horizon_hours * 3600:
            raise ValueError(f"forecast_every_s={self.forecast_every_s:g} leaves time uncovered by a "
                             f"{self.horizon_hours:g} h forecast; raise horizon_hours or forecast more often")
        return self


class PowerConfig(StrictModel):
    """The study's measured draw of a 4-GPU site; a site of `gpus` GPUs draws gpus / per_gpus times this."""

    train_kw: float = Field(2.024, ge=0, description="kW while training")
    idle_kw: float = Field(0.468, ge=0, description="kW while provisioned and idle")
    per_gpus: int = Field(4, ge=1, description="GPUs the two figures above are for")


class BudgetConfig(StrictModel):
    """Hard limits: the run stops before the round that would exceed one. None = unlimited."""

    energy_kwh: float | None = Field(None, gt=0)
    carbon_kg: float | None = Field(None, gt=0)


class CurtailConfig(StrictModel):
    """Sites, availability rule, simulated clock, policy, power model and budget of one study."""

    sites: list[GridSiteConfig] = Field(default_factory=_default_sites, min_length=1)
    unit: Unit = Field("g_per_kwh", description="unit of the MCI traces and of threshold; the shared WattTime "
                                                "file holds g/kWh (integer lbs/MWh x 0.45359237)")
    negative_mci: bool = Field(False, description="accept negative trace values (marginal emissions below zero, "
                                                  "e.g. curtailed renewables); otherwise they are refused as errors")
    threshold: float = Field(300.0, gt=0, description="a site may train while its MCI is below this (in `unit`)")
    provision_delay_s: float = Field(240.0, ge=0, description="powered and idle before a site can train")
    off_delay_s: float = Field(600.0, ge=0, description="a site leaves once its MCI stayed above threshold this long")
    round_s: float = Field(600.0, gt=0, description="simulated seconds per DiLoCo round")
    step_s: float = Field(60.0, gt=0, description="simulated seconds per optimizer step (see schedule.py)")
    start_s: float = Field(172800.0, ge=0, description="simulated start, seconds after the traces' first sample "
                                                       "(two days give the forecast policy its history)")
    policy: PolicyName = "reactive"
    forecast: ForecastPolicyConfig = ForecastPolicyConfig()
    power: PowerConfig = PowerConfig()
    budget: BudgetConfig = BudgetConfig()
    target_site_steps: int = Field(3000, ge=1, description="optimizer steps summed over sites: every run trains "
                                                           "this many (equal tokens)")
    out_dir: str = "results/llm/curtail"
    experiment: str = "llm-curtail"
    pretrain: Overrides = Field(default_factory=lambda: dict(CURTAIL_PRETRAIN),
                                description="overrides of llm.pretrain for the training (model, batch, DiLoCo); any "
                                            "key of llm.pretrain, dotted (`--set pretrain.resume=true`)")

    @model_validator(mode="after")
    def consistent(self) -> CurtailConfig:
        names = [site.name for site in self.sites]
        if len(set(names)) != len(names):
            raise ValueError(f"site names must be unique, got {names}")
        if self.step_s > self.round_s:
            raise ValueError(f"step_s={self.step_s:g} is longer than a round ({self.round_s:g} s): no site could "
                             f"ever finish a step; lower step_s or raise round_s")
        history_s = self.forecast.history_hours * 3600
        if self.policy == "forecast" and self.start_s < history_s:
            raise ValueError(f"the forecast policy needs {self.forecast.history_hours:g} h of trace before start_s, which "
                             f"leaves {(history_s - self.start_s) / 3600:g} h missing (it would act as reactive until "
                             f"then); raise start_s to {history_s:g} or lower forecast.history_hours")
        return self

    @property
    def threshold_kg_per_kwh(self) -> float:
        return self.threshold * KG_PER_KWH[self.unit]
