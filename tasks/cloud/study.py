"""The collaborative-search study: collaborators' support models, fitted on the runs their own searches
profiled, and searches scored by the cheapest feasible configuration found after each profiling run.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from tasks.cloud.config import CloudConfig
from tasks.cloud.problem import Truth, make_problem
from tasks.cloud.search import Context, SupportModel, observed, run_search


def stable_seed(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode()) & 0x7FFFFFFF


def collaborator_support(runs: pd.DataFrame, space: pd.DataFrame, job: str, cfg: CloudConfig) -> SupportModel:
    """A collaborator's models of `job`, fitted on the runs it shared, as it observed them (noise, failures at
    the timeout). The study's protocol: the runs of its own CherryPick search of `shared_runs` evaluations,
    under a runtime limit of its own (one of the study's percentiles), seeded apart from every target
    search. `shared_runs: all`: every configuration of the job (an upper bound, not the study)."""
    seed = stable_seed(cfg.seed, "collaborator", job)
    percentile = cfg.percentiles[np.random.default_rng(seed).integers(len(cfg.percentiles))]
    problem, oracle, _ = make_problem(runs, space, job, percentile, cfg.timeout_s, cfg.noise_std, seed)
    if cfg.shared_runs == "all":
        obs = [oracle.profile(i) for i in range(len(problem.X))]
    else:
        torch.manual_seed(seed)
        obs = run_search("cherrypick", problem, oracle, Context(cfg, [], seed), runs=cfg.shared_runs)
    return SupportModel.fit(job, *observed(problem, obs))


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
    """At each k: best feasible cost / optimum, undefined (None) until a feasible run is found (as Karasu
    scores); `norm_cost_penalised` fills those with the priciest feasible configuration instead."""
    found = [truth.best_found(profiled[:k]) for k in range(1, len(profiled) + 1)]
    norm = [None if cost is None else cost / truth.optimum for cost in found]
    within = next((k for k, value in enumerate(norm, 1) if value is not None and value <= 1.1), len(profiled) + 1)
    return {"norm_cost": norm, "norm_cost_penalised": [truth.fallback / truth.optimum if v is None else v for v in norm],
            "runs_to_within_10pct": within, "feasible_runs": int(sum(truth.feasible[i] for i in profiled)),
            "runs": len(profiled)}


def pareto_score(profiled: list[int], truth: Truth) -> dict:
    return {"hv_ratio": [truth.hypervolume_ratio(profiled[:k]) for k in range(1, len(profiled) + 1)],
            "runs": len(profiled), "feasible_runs": int(sum(truth.completed[i] for i in profiled))}
