"""The searches: random, CherryPick (constrained EI on the target's own GPs) and Karasu (noisy EI on
an RGPE ensemble of collaborators' models); in the Pareto variant both use noisy expected hypervolume
improvement of (cost, runtime) on the same models. Each picks the next unprofiled candidate,
profiles it through the oracle, and stops after `max_runs`; it returns the observations in order.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from botorch.acquisition.analytic import LogConstrainedExpectedImprovement
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.acquisition.multi_objective.logei import (
    qLogNoisyExpectedHypervolumeImprovement,
)
from botorch.acquisition.multi_objective.objective import WeightedMCMultiOutputObjective
from botorch.acquisition.objective import GenericMCObjective
from botorch.exceptions.warnings import BotorchWarning
from botorch.sampling import SobolQMCNormalSampler

from tasks.cloud.config import CloudConfig
from tasks.cloud.models import (
    DTYPE,
    Ensemble,
    Member,
    fit_gp,
    latent,
    loo_samples,
    ranking_loss,
    rgpe_weights,
    shift_to,
)
from tasks.cloud.problem import Observation, Oracle, Problem

RUNTIME, COST = 0, 1  # output order of every model here


@dataclass(frozen=True)
class SupportModel:
    """A collaborator's models of one job (log runtime, log cost), fitted once on its shared runs."""

    job: str
    outputs: tuple  # one single-output SingleTaskGP view per objective, in RUNTIME, COST order

    @classmethod
    def fit(cls, job: str, X: torch.Tensor, Y: torch.Tensor) -> SupportModel:
        """GPs on a collaborator's runs of `job`: features (n, d), outcomes (n, 2: log runtime, log cost)."""
        model = fit_gp(X, Y)
        return cls(job, tuple(model.models[i] for i in (RUNTIME, COST)))


@dataclass(frozen=True)
class Context:
    cfg: CloudConfig
    supports: list[SupportModel]
    seed: int


def observed(problem: Problem, obs: list[Observation]) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (n, d) and outcomes (n, 2: log runtime, log cost) of the profiled candidates."""
    X = torch.tensor(problem.X[[o.index for o in obs]], dtype=DTYPE)
    return X, torch.tensor([[o.log_runtime, o.log_cost] for o in obs], dtype=DTYPE)


def best_feasible_cost(obs: list[Observation], log_limit: float) -> float | None:
    costs = [o.log_cost for o in obs if o.completed and o.log_runtime <= log_limit]
    return min(costs) if costs else None


def run_search(method: str, problem: Problem, oracle: Oracle, ctx: Context, objective: str = "constrained",
               runs: int | None = None) -> list[Observation]:
    """`objective` constrained: cheapest run meeting the runtime limit; pareto: the cost-runtime front.
    `runs` profiling runs (default `max_runs`)."""
    rng = np.random.default_rng(ctx.seed)
    order = rng.permutation(len(problem.X))  # random initial designs, and the random search itself
    initial = {"random": ctx.cfg.max_runs, "cherrypick": ctx.cfg.cherrypick_initial_runs,
               "karasu": ctx.cfg.karasu.initial_runs}[method]
    choose = {("constrained", "cherrypick"): cherrypick_next, ("constrained", "karasu"): karasu_next,
              ("pareto", "cherrypick"): pareto_cherrypick_next, ("pareto", "karasu"): pareto_karasu_next,
              }.get((objective, method))
    obs: list[Observation] = []
    budget = min(runs or ctx.cfg.max_runs, len(problem.X))
    for index in order[:min(initial, budget)]:
        obs.append(oracle.profile(int(index)))
    while len(obs) < budget:
        obs.append(oracle.profile(choose(problem, obs, ctx)))
    return obs


def _argmax_unprofiled(acq: Callable[[torch.Tensor], torch.Tensor], problem: Problem, obs: list[Observation]) -> int:
    X = torch.tensor(problem.X, dtype=DTYPE)
    open_ = torch.ones(len(X), dtype=torch.bool)
    open_[[o.index for o in obs]] = False
    with torch.no_grad():
        values = acq(X[open_].unsqueeze(1))
    return int(torch.nonzero(open_).squeeze(1)[int(torch.argmax(values))])


def cherrypick_next(problem: Problem, obs: list[Observation], ctx: Context) -> int:
    """Constrained EI: improvement in log cost times the chance of meeting the runtime limit."""
    X, Y = observed(problem, obs)
    model = fit_gp(X, Y)
    best = best_feasible_cost(obs, problem.log_limit)
    best = float(Y[:, COST].max()) if best is None else best  # none feasible yet: feasibility dominates
    acq = LogConstrainedExpectedImprovement(model, best_f=best, objective_index=COST,
                                            constraints={RUNTIME: (None, problem.log_limit)}, maximize=False)
    return _argmax_unprofiled(acq, problem, obs)


def karasu_model(problem: Problem, obs: list[Observation], ctx: Context) -> Ensemble:
    """The RGPE ensemble of support models (shifted to the target) and, once it has enough runs, the target's GPs."""
    k = ctx.cfg.karasu
    X, Y = observed(problem, obs)
    gen = torch.Generator().manual_seed(ctx.seed + len(obs))
    posts = {s.job: [latent(view, X) for view in s.outputs] for s in ctx.supports}
    supports = choose_supports(ctx.supports, posts, Y, k.support_k)
    target = fit_gp(X, Y) if len(obs) >= k.target_joins_after or not supports else None
    outputs = []
    for output in (RUNTIME, COST):
        y = Y[:, output]
        loo = None if target is None else loo_samples(target.models[output], X, y, k.ranking_samples, gen)
        weights = rgpe_weights([posts[s.job][output] for s in supports], loo, y, k.ranking_samples, gen)
        members = [Member(s.outputs[output], float(w), shift_to(posts[s.job][output], y))
                   for s, w in zip(supports, weights)]
        if target is not None:
            members.append(Member(target.models[output], float(weights[-1])))
        outputs.append(members)
    return Ensemble(outputs)


def karasu_next(problem: Problem, obs: list[Observation], ctx: Context) -> int:
    return constrained_nei_next(karasu_model(problem, obs, ctx), problem, obs, ctx)


def constrained_nei_next(model: Ensemble, problem: Problem, obs: list[Observation], ctx: Context) -> int:
    """Noisy EI with the runtime constraint on the ensemble."""
    X, _ = observed(problem, obs)
    limit = problem.log_limit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BotorchWarning)  # no feasible run yet: NEI then values feasibility, as wanted
        acq = qLogNoisyExpectedImprovement(
            model, X_baseline=X, sampler=SobolQMCNormalSampler(torch.Size([128]), seed=ctx.seed),
            objective=GenericMCObjective(lambda Z, X=None: -Z[..., COST]),
            constraints=[lambda Z: Z[..., RUNTIME] - limit], prune_baseline=False, cache_root=False)
        return _argmax_unprofiled(acq, problem, obs)


def _pareto_next(model, problem: Problem, obs: list[Observation], ctx: Context) -> int:
    """Noisy expected hypervolume improvement of (-log runtime, -log cost), reference point just
    beyond the worst observed values."""
    X, Y = observed(problem, obs)
    ref = -(Y.max(dim=0).values + 0.1 * (Y.max(dim=0).values - Y.min(dim=0).values).clamp_min(0.1))
    acq = qLogNoisyExpectedHypervolumeImprovement(
        model, ref_point=ref, X_baseline=X, sampler=SobolQMCNormalSampler(torch.Size([64]), seed=ctx.seed),
        objective=WeightedMCMultiOutputObjective(torch.tensor([-1.0, -1.0], dtype=DTYPE)), cache_root=False)
    return _argmax_unprofiled(acq, problem, obs)


def pareto_cherrypick_next(problem: Problem, obs: list[Observation], ctx: Context) -> int:
    X, Y = observed(problem, obs)
    return _pareto_next(fit_gp(X, Y), problem, obs, ctx)


def pareto_karasu_next(problem: Problem, obs: list[Observation], ctx: Context) -> int:
    return _pareto_next(karasu_model(problem, obs, ctx), problem, obs, ctx)


def choose_supports(supports: list[SupportModel], posts: dict, Y: torch.Tensor, k: int) -> list[SupportModel]:
    """The k supports whose mean predictions rank the target's runs best; the first k (the most alike
    by name, see `support_jobs`) while there are too few runs to rank."""
    if len(supports) <= k or len(Y) < 3:
        return supports[:k]
    losses = [sum(float(ranking_loss(posts[s.job][o].mean.unsqueeze(0), Y[:, o])[0]) for o in (RUNTIME, COST))
              for s in supports]
    return [supports[i] for i in np.argsort(losses, kind="stable")[:k]]
