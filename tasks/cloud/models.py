"""Performance models: one BoTorch GP per objective, and Karasu's rank-weighted ensemble (RGPE).

Objectives are log runtime and log cost, as observed. Support models are GPs fitted on a
collaborator's shared runs of another job; each is shifted to the target's level (the mean of
the target's observations minus the model's prediction there), since jobs differ in scale more
than in shape. Weights follow RGPE (Feurer et al.): the share of posterior samples in which a
model ranks the target's observations best; the target's own GP enters with leave-one-out models, each
held-out prediction ranked against that model's own in-sample predictions, and wins ties.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.model import Model
from botorch.models.transforms.outcome import Standardize
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from gpytorch.mlls import ExactMarginalLogLikelihood
from linear_operator.utils.cholesky import psd_safe_cholesky

DTYPE = torch.float64


def fit_gp(X: torch.Tensor, Y: torch.Tensor) -> ModelListGP:
    """One GP per column of Y (fitted one by one: faster here than BoTorch's batched fit), with
    inferred noise on standardised outcomes, hyperparameters by marginal likelihood."""
    models = []
    for i in range(Y.shape[-1]):
        model = SingleTaskGP(X, Y[:, i:i + 1], outcome_transform=Standardize(m=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # few points: BoTorch warns about scaling and conditioning
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        models.append(model.eval())
    return ModelListGP(*models).eval()


def latent(model: SingleTaskGP, X: torch.Tensor) -> MultivariateNormal:
    with torch.no_grad():
        return model.posterior(X).distribution


def joint_samples(post: MultivariateNormal, n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, points) draws from a posterior over a few points (Cholesky with jitter if needed: points may be close)."""
    chol = psd_safe_cholesky(post.covariance_matrix)
    return post.mean + torch.randn(n, len(post.mean), generator=gen, dtype=DTYPE) @ chol.T


def ranking_loss(samples: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Misordered ordered pairs (i, j), i != j, between each sample (s, n) and the observations y (n,)."""
    order_s = samples.unsqueeze(-1) < samples.unsqueeze(-2)
    order_y = y.unsqueeze(-1) < y.unsqueeze(-2)
    return (order_s ^ order_y).sum(dim=(-1, -2)).to(DTYPE)


def loo_ranking_loss(samples: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The target's loss (RGPE): samples (s, i, j) of the model fitted without point i, at every point j;
    each held-out prediction (i, i) is ranked against that same model's in-sample predictions (i, j)."""
    held_out = samples.diagonal(dim1=-2, dim2=-1).unsqueeze(-1)
    order_s = held_out < samples
    order_y = y.unsqueeze(-1) < y.unsqueeze(-2)
    return (order_s ^ order_y).sum(dim=(-1, -2)).to(DTYPE)


def loo_samples(gp: SingleTaskGP, X: torch.Tensor, y: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, i, j) joint samples at every observed point j of the GP refitted without point i (the target's
    hyperparameters, its own outcome standardisation)."""
    params = {k: v for k, v in gp.state_dict().items() if "outcome_transform" not in k}
    models = []
    for i in range(len(y)):
        keep = torch.arange(len(y)) != i
        loo = SingleTaskGP(X[keep], y[keep].unsqueeze(-1), outcome_transform=Standardize(m=1))
        loo.load_state_dict(params, strict=False)
        models.append(joint_samples(latent(loo.eval(), X), n, gen))
    return torch.stack(models, dim=1)


def rgpe_weights(supports: list[MultivariateNormal], target: torch.Tensor | None, y: torch.Tensor,
                 n_samples: int, gen: torch.Generator) -> torch.Tensor:
    """RGPE weights of supports (their posteriors at the observed points) and the target (its LOO samples,
    last): the share of samples in which each has the lowest ranking loss. A tie with the target goes to
    the target; a tie among supports is split. A support whose median loss exceeds the target's 95th
    percentile gets none (Feurer et al.'s guard against weight dilution)."""
    losses = [ranking_loss(joint_samples(post, n_samples, gen), y) for post in supports]
    if target is not None:
        losses.append(loo_ranking_loss(target, y))
    losses = torch.stack(losses)  # (models, samples)
    if target is not None:
        diluting = losses[:-1].median(dim=1).values > torch.quantile(losses[-1], 0.95)
        losses[:-1][diluting] = float("inf")
    best = losses == losses.min(dim=0, keepdim=True).values
    if target is not None:
        best[:-1] &= ~best[-1]
    weights = (best / best.sum(dim=0, keepdim=True)).mean(dim=1)
    return weights / weights.sum()


@dataclass
class Member:
    model: SingleTaskGP
    weight: float
    shift: float = 0.0


class Ensemble(Model):
    """Weighted GP mixture per output: mean sum(w (mu + shift)), covariance sum(w^2 K) (RGPE)."""

    def __init__(self, outputs: list[list[Member]]):
        super().__init__()
        self.outputs = outputs

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def _mvn(self, members: list[Member], X: torch.Tensor) -> MultivariateNormal:
        mean, cov = 0.0, 0.0
        for m in members:
            if m.weight > 0:
                post = latent(m.model, X)
                mean = mean + m.weight * (post.mean + m.shift)
                cov = cov + m.weight ** 2 * post.covariance_matrix
        jitter = 1e-8 * torch.eye(X.shape[-2], dtype=X.dtype)
        return MultivariateNormal(mean, cov + jitter)

    def posterior(self, X: torch.Tensor, output_indices=None, observation_noise=False, posterior_transform=None,
                  **kwargs) -> GPyTorchPosterior:
        mvns = [self._mvn(members, X) for members in self.outputs]
        mvn = mvns[0] if len(mvns) == 1 else MultitaskMultivariateNormal.from_independent_mvns(mvns)
        posterior = GPyTorchPosterior(mvn)
        return posterior_transform(posterior) if posterior_transform is not None else posterior


def shift_to(post: MultivariateNormal, y: torch.Tensor) -> float:
    """The offset that puts a support model's predictions at the target's observed level."""
    return float((y - post.mean).mean())
