"""Typed configuration of the log anomaly pipeline (params.yaml section `logs`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tasks.common.config import StrictModel, check_known_models

MODELS = ["pull", "loglab", "deeplog", "pca", "iforest", "invariants", "logcluster", "supervised"]
FORMATS = ["bgl", "thunderbird", "hdfs", "spirit", "generic"]


class DatasetSpec(StrictModel):
    name: str
    format: Literal["bgl", "thunderbird", "hdfs", "spirit", "generic"]
    path: str = Field(description="relative to the datasets folder, or absolute")
    labels: str | None = Field(None, description="HDFS: block-level anomaly_label.csv")
    incidents: str | None = Field(None, description="CSV of failure windows (start,end[,node]); else simulated")
    max_lines: int | None = Field(None, ge=1, description="read only the first N lines")


class ParseConfig(StrictModel):
    sim_th: float = Field(0.7, gt=0, le=1, description="drain similarity threshold")
    depth: int = Field(3, ge=3, description="drain3 prefix-tree depth (3 = one leading token)")
    max_children: int = Field(100, ge=2)
    max_tokens: int = Field(32, ge=4, description="token view: longer lines are truncated")


class PullConfig(StrictModel):
    dim: int = Field(32, ge=8)
    heads: int = Field(2, ge=1)
    layers: int = Field(1, ge=1)
    epochs: int = Field(20, ge=1, description="epochs of the first round; later rounds warm-start")
    epochs_next: int = Field(5, ge=1, description="epochs of each later round")
    batch_size: int = Field(256, ge=8)
    lr: float = Field(3e-3, gt=0)
    max_rounds: int = Field(5, ge=1, description="PU rounds for PULL; LogLAB uses 1")
    relabel_quantile: float = Field(0.99, gt=0, lt=1, description="unknown below this known-normal score quantile -> normal")
    relabel_tol: float = Field(0.001, ge=0, description="stop when this share of unknown lines changes label or less")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 autocast only where bf16 is fast (AMX / AVX512-BF16 CPU), else fp32")


class DeepLogConfig(StrictModel):
    history: int = Field(10, ge=1)
    top_k: int = Field(9, ge=1)
    hidden: int = Field(64, ge=8)
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(512, ge=8)
    lr: float = Field(3e-3, gt=0)


class CountConfig(StrictModel):
    session_s: float = Field(60.0, gt=0, description="fixed time window (per node) for count vectors")
    pca_variance: float = Field(0.95, gt=0, lt=1)
    pca_alpha: float = Field(0.001, gt=0, lt=1, description="Q-statistic significance")
    iforest_trees: int = Field(100, ge=10)
    invariant_eps: float = Field(1e-6, gt=0)
    logcluster_max_dist: float = Field(0.3, gt=0, lt=1, description="cosine distance to the nearest normal cluster")


class LogsConfig(StrictModel):
    datasets: list[DatasetSpec]
    run: list[str] = Field(description="names of the datasets to run")
    window_sizes: list[float] = Field(description="failure-window half-widths in seconds (evaluation sweeps them)")
    models: list[str] = Field(default_factory=lambda: list(MODELS))
    train_fraction: float = Field(0.8, gt=0, lt=1, description="chronological split")
    malformed_warn_share: float = Field(0.05, ge=0, le=1, description="warn when more of a file's lines are malformed")
    seed: int = 0
    out_dir: str = "results/logs"
    experiment: str = "logs"
    parse: ParseConfig = ParseConfig()
    pull: PullConfig = PullConfig()
    deeplog: DeepLogConfig = DeepLogConfig()
    counts: CountConfig = CountConfig()

    @field_validator("models")
    @classmethod
    def known_models(cls, models: list[str]) -> list[str]:
        return check_known_models(models, MODELS)

    @field_validator("window_sizes")
    @classmethod
    def non_negative(cls, sizes: list[float]) -> list[float]:
        if not sizes or any(s < 0 for s in sizes):
            raise ValueError("window_sizes must be a non-empty list of seconds >= 0")
        return sizes

    def dataset(self, name: str) -> DatasetSpec:
        for spec in self.datasets:
            if spec.name == name:
                return spec
        raise ValueError(f"dataset {name!r} is not defined under logs.datasets ({[d.name for d in self.datasets]})")
