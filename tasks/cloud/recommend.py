"""`seedflow cloud optimize`: the next configuration to profile for a user's own job, from the
user's runs so far and the collaborators' runs in the shared repository (Karasu)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from tasks.cloud.config import CloudConfig
from tasks.cloud.models import DTYPE, Ensemble
from tasks.cloud.problem import Observation, Problem, candidate_space, feature_matrix
from tasks.cloud.runs import CloudError
from tasks.cloud.search import (
    COST,
    RUNTIME,
    Context,
    SupportModel,
    constrained_nei_next,
    karasu_model,
    observed,
)
from tasks.cloud.study import stable_seed, support_jobs


def check_request(job: str, max_runtime_s: float) -> None:
    if job.count("/") != 2:
        raise CloudError(f"--workload {job!r} must be framework/workload/datasize, e.g. spark/join/huge")
    if max_runtime_s <= 0:
        raise CloudError(f"--max-runtime must be positive seconds, got {max_runtime_s}")


def recommend(job: str, own: pd.DataFrame, shared: pd.DataFrame, max_runtime_s: float, cfg: CloudConfig) -> dict:
    """Next configuration (with predicted runtime, cost and chance of meeting the limit) and the best so far."""
    check_request(job, max_runtime_s)
    both = pd.concat([own, shared], ignore_index=True)
    if both.empty:
        raise CloudError("no runs at all: profile your job once or contribute runs to the repository first")
    space = candidate_space(both)
    problem = Problem(job, space[["vm_type", "nodes", "usd_per_hour"]], feature_matrix(space), max_runtime_s, cfg.timeout_s)
    obs = _observations(own, space, cfg.timeout_s)
    others = shared[shared["job"] != job]
    jobs = support_jobs(job, sorted(others["job"].unique()), cfg.karasu.support)
    supports = [SupportModel.fit(j, *observed(problem, _observations(others[others["job"] == j], space, cfg.timeout_s)))
                for j in jobs]
    seed = stable_seed(cfg.seed, job, len(obs))
    out = {"job": job, "max_runtime_s": max_runtime_s, "profiled": len(obs), "collaborators_jobs": len(supports),
           "best_so_far": _best(obs, problem)}
    if len(obs) == len(space):
        return {**out, "next": None, "note": "every configuration is profiled"}
    if not supports and len(obs) < cfg.karasu.target_joins_after:
        index = _first_unprofiled(np.random.default_rng(seed).permutation(len(space)), obs)
        return {**out, "next": {"config": problem.describe(index), "why": "initial design: too few runs to model yet"}}
    ctx = Context(cfg, supports, seed)
    if not obs:
        index = _first_unprofiled(np.argsort(-_prior_score(problem, ctx)), obs)
        return {**out, "next": {"config": problem.describe(index),
                                "why": "collaborators' models: cheapest configuration they expect to meet the limit"}}
    model = karasu_model(problem, obs, ctx)  # fits your GPs once you have enough runs: never under no_grad
    index = constrained_nei_next(model, problem, obs, ctx)
    return {**out, "next": {"config": problem.describe(index), **_prediction(model, problem, index)}}


def _observations(own: pd.DataFrame, space: pd.DataFrame, timeout_s: float) -> list[Observation]:
    rows = space.reset_index().merge(own, on=["vm_type", "nodes"], suffixes=("", "_run"))
    obs = []
    for r in rows.itertuples():
        runtime = r.elapsed_time_s if r.completed else max(r.elapsed_time_s, timeout_s)
        obs.append(Observation(int(r.index), math.log(runtime), math.log(r.usd_per_hour * runtime / 3600), bool(r.completed)))
    return obs


def _best(obs: list[Observation], problem: Problem) -> dict | None:
    ok = [o for o in obs if o.completed and o.log_runtime <= problem.log_limit]
    if not ok:
        return None
    best = min(ok, key=lambda o: o.log_cost)
    return {"config": problem.describe(best.index), "runtime_s": round(math.exp(best.log_runtime), 1),
            "cost_usd": round(math.exp(best.log_cost), 4)}


def _first_unprofiled(order, obs: list[Observation]) -> int:
    done = {o.index for o in obs}
    return int(next(i for i in order if int(i) not in done))


def _prior_score(problem: Problem, ctx: Context) -> np.ndarray:
    """Before the user's first run: the supports' mean log cost where they expect the limit to hold."""
    X = torch.tensor(problem.X, dtype=DTYPE)
    with torch.no_grad():
        runtime = torch.stack([s.outputs[RUNTIME].posterior(X).mean.squeeze(-1) for s in ctx.supports]).mean(0)
        cost = torch.stack([s.outputs[COST].posterior(X).mean.squeeze(-1) for s in ctx.supports]).mean(0)
    return (-cost - 10.0 * (runtime > problem.log_limit)).numpy()


def _prediction(model: Ensemble, problem: Problem, index: int) -> dict:
    X = torch.tensor(problem.X[index:index + 1], dtype=DTYPE)
    with torch.no_grad():
        post = model.posterior(X)
    mean, std = post.mean.squeeze(0).squeeze(0), post.variance.sqrt().squeeze(0).squeeze(0)
    p_ok = 0.5 * (1 + math.erf((problem.log_limit - float(mean[RUNTIME])) / (float(std[RUNTIME]) * math.sqrt(2) + 1e-12)))
    return {"expected_runtime_s": round(math.exp(float(mean[RUNTIME])), 1),
            "expected_cost_usd": round(math.exp(float(mean[COST])), 4), "p_meets_limit": round(p_ok, 3),
            "why": "Karasu: noisy EI on the collaborators' ensemble and your runs"}
