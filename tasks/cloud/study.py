"""The collaborative-search study: a repository of shared runs, support models fitted on it, and
searches scored by the cheapest feasible configuration found after each profiling run.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from tasks.cloud.config import CloudConfig
from tasks.cloud.models import DTYPE, fit_gp
from tasks.cloud.problem import Truth, feature_matrix, make_problem
from tasks.cloud.search import Context, SupportModel, run_search


def stable_seed(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode()) & 0x7FFFFFFF


def shared_repository(runs: pd.DataFrame, cfg: CloudConfig) -> pd.DataFrame:
    """What collaborators shared: `shared_runs` runs of each job, drawn once per study seed."""
    picks = [job_runs.sample(min(cfg.shared_runs, len(job_runs)), random_state=stable_seed(cfg.seed, job))
             for job, job_runs in runs.groupby("job", sort=True)]
    return pd.concat(picks, ignore_index=True)


def fit_support(job_runs: pd.DataFrame, space: pd.DataFrame, cfg: CloudConfig) -> SupportModel:
    """GPs of log runtime and log cost on one job's shared runs, as observed (noise, failures at the timeout)."""
    rows = space.merge(job_runs, on=["vm_type", "nodes"], suffixes=("", "_run"))
    runtime = np.where(rows["completed"], rows["elapsed_time_s"], np.maximum(rows["elapsed_time_s"], cfg.timeout_s))
    cost = rows["usd_per_hour"].to_numpy() * runtime / 3600.0
    noise = np.random.default_rng(stable_seed(cfg.seed, "shared", job_runs["job"].iloc[0])).normal(
        0.0, cfg.noise_std, size=(len(rows), 2))
    X = torch.tensor(feature_matrix(rows), dtype=DTYPE)
    Y = torch.tensor(np.column_stack([np.log(runtime), np.log(cost)]) + noise, dtype=DTYPE)
    return SupportModel.of(job_runs["job"].iloc[0], fit_gp(X, Y))


def support_jobs(target: str, jobs: list[str], mode: str) -> list[str]:
    """Collaborators' jobs a target may learn from, never the target itself; `similar` orders them
    the same workload first, then the same framework (what a user knows before any run)."""
    framework, workload, _ = target.split("/")
    others = [j for j in jobs if j != target]
    same_workload = [j for j in others if j.split("/")[:2] == [framework, workload]]
    same_framework = [j for j in others if j.split("/")[0] == framework and j not in same_workload]
    if mode == "same_workload":
        return same_workload
    if mode == "same_framework":
        return same_workload + same_framework
    return same_workload + same_framework + [j for j in others if j not in same_workload + same_framework]


@dataclass(frozen=True)
class Search:
    job: str
    method: str
    percentile: int | None  # None: the Pareto variant (no runtime limit)
    repetition: int

    @property
    def objective(self) -> str:
        return "constrained" if self.percentile is not None else "pareto"


def run_one(search: Search, runs: pd.DataFrame, space: pd.DataFrame, supports: list[SupportModel],
            cfg: CloudConfig) -> dict:
    """One search, scored at every k: normalised best cost, feasibility of each run, the picks."""
    seed = stable_seed(cfg.seed, search.job, search.percentile, search.repetition)
    percentile = 100 if search.percentile is None else search.percentile
    problem, oracle, truth = make_problem(runs, space, search.job, percentile, cfg.timeout_s, cfg.noise_std, seed)
    torch.manual_seed(seed)
    run_search(search.method, problem, oracle, Context(cfg, supports, seed), search.objective)
    scored = score(oracle.profiled, truth) if search.objective == "constrained" else pareto_score(oracle.profiled, truth)
    return {"job": search.job, "method": search.method, "objective": search.objective, "percentile": search.percentile,
            "repetition": search.repetition, "max_runtime_s": problem.max_runtime_s, **scored,
            "picks": [problem.describe(i) for i in oracle.profiled]}


def score(profiled: list[int], truth: Truth) -> dict:
    norm = [truth.best_found(profiled[:k]) / truth.optimum for k in range(1, len(profiled) + 1)]
    within = next((k for k, value in enumerate(norm, 1) if value <= 1.1), len(profiled) + 1)
    return {"norm_cost": norm, "runs_to_within_10pct": within,
            "feasible_runs": int(sum(truth.feasible[i] for i in profiled)), "runs": len(profiled)}


def pareto_score(profiled: list[int], truth: Truth) -> dict:
    return {"hv_ratio": [truth.hypervolume_ratio(profiled[:k]) for k in range(1, len(profiled) + 1)],
            "runs": len(profiled), "feasible_runs": int(sum(truth.completed[i] for i in profiled))}
