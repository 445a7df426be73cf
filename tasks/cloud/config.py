"""Typed configuration of the cloud-configuration pipeline (params.yaml section `cloud`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tasks.common.config import StrictModel, check_known_models

METHODS = ["random", "cherrypick", "karasu"]
Support = Literal["same_workload", "same_framework", "similar"]


class KarasuConfig(StrictModel):
    support: Support = Field("similar", description="collaborators' workloads the ensemble may use")
    support_k: int = Field(3, ge=1, description="similar: the k support models ranking the target's runs best")
    initial_runs: int = Field(1, ge=1)
    target_joins_after: int = Field(3, ge=2, description="the target's own GP joins the ensemble after this many runs")
    ranking_samples: int = Field(256, ge=16, description="posterior samples per model for the RGPE ranking loss")


class CloudConfig(StrictModel):
    runs_file: str = Field("cloud/scout_multinode.csv", description="runs table, relative to the data dir")
    prices_file: str = Field("cloud/ec2_prices.csv", description="USD per hour per VM type (optionally vcpus, memory_gb)")
    repository: str = Field("data/cloud_repository", description="shared profiling runs (Parquet), one file per contribution")
    workloads: list[str] = Field(default_factory=list, description="targets as framework/workload/datasize; empty: all")
    methods: list[str] = Field(default_factory=lambda: list(METHODS), min_length=1)
    percentiles: list[int] = Field([10, 30, 50, 70, 90], min_length=1)
    repetitions: int = Field(3, ge=1)
    max_runs: int = Field(10, ge=2, description="profiling runs per search")
    noise_std: float = Field(0.1, ge=0, description="N(0, s) added to observed log runtime and log cost")
    timeout_s: float = Field(7200, gt=0, description="a run that did not complete is modelled as running this long")
    shared_runs: int | Literal["all"] = Field(
        10, description="runs each collaborator shares of its job: those of its own CherryPick search of this many "
                        "evaluations (the study's protocol), or `all` of the job's runs (an upper bound)")
    cherrypick_initial_runs: int = Field(3, ge=1)
    pareto_methods: list[str] = Field(default_factory=list, description="the Pareto (cost, runtime) variant; empty: off")
    pareto_repetitions: int = Field(1, ge=1)
    karasu: KarasuConfig = KarasuConfig()
    seed: int = 0
    out_dir: str = "results/cloud"
    experiment: str = "cloud"

    @field_validator("methods", "pareto_methods")
    @classmethod
    def known_methods(cls, methods: list[str]) -> list[str]:
        return check_known_models(methods, METHODS)

    @field_validator("shared_runs", mode="before")
    @classmethod
    def runs_or_all(cls, value):
        if value == "all" or (isinstance(value, int) and not isinstance(value, bool) and value >= 2):
            return value
        raise ValueError(f"must be a number of runs >= 2 or `all`, got {value!r}")

    @field_validator("percentiles")
    @classmethod
    def percentile_range(cls, percentiles: list[int]) -> list[int]:
        if any(not 0 < p <= 100 for p in percentiles):
            raise ValueError(f"percentiles must lie in (0, 100], got {percentiles}")
        return percentiles
