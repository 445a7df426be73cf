"""Performance models: one BoTorch GP per objective, and Karasu's rank-weighted ensemble (RGPE).

Objectives are log runtime and log cost, as observed. Support models are GPs fitted on a
collaborator's shared runs of another job; each is shifted to the target's level (the mean of
the target's observations minus the model's prediction there), since jobs differ in scale more
than in shape. Weights follow RGPE (Feurer et al.): the share of posterior samples in which a
model ranks the target's observations best; the target's own GP enters with leave-one-out samples.
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


def ranking_loss(samples: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Misordered pairs between each sample (s, n) and the observations y (n,)."""
    order_s = samples.unsqueeze(-1) < samples.unsqueeze(-2)
    order_y = y.unsqueeze(-1) < y.unsqueeze(-2)
    return (order_s ^ order_y).sum(dim=(-1, -2)).to(DTYPE)


def loo_samples(model: ModelListGP, X: torch.Tensor, Y: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """(outputs, n, points) samples of each observation predicted by the target GP fitted without it
    (same hyperparameters)."""
    outputs = []
    for output, gp in enumerate(model.models):
        params = {k: v for k, v in gp.state_dict().items() if "outcome_transform" not in k}
        columns = []
        for i in range(len(Y)):
            keep = torch.arange(len(Y)) != i
            loo = SingleTaskGP(X[keep], Y[keep, output:output + 1], outcome_transform=Standardize(m=1))
            loo.load_state_dict(params, strict=False)
            post = latent(loo.eval(), X[i:i + 1])
            columns.append(post.mean + post.stddev * torch.randn(n, generator=gen, dtype=DTYPE))
        outputs.append(torch.stack(columns, dim=-1))
    return torch.stack(outputs)


def rgpe_weights(supports: list[MultivariateNormal], target: torch.Tensor | None, y: torch.Tensor,
                 n_samples: int, gen: torch.Generator) -> torch.Tensor:
    """RGPE weights of supports (their posteriors at the observed points) and the target (its LOO samples,
    last): the share of samples in which each has the lowest ranking loss, ties split; a support whose
    median loss exceeds the target's 95th percentile gets none."""
    losses = []
    for post in supports:
        z = torch.randn(n_samples, len(y), generator=gen, dtype=DTYPE)
        samples = post.mean + z @ torch.linalg.cholesky(post.covariance_matrix + 1e-9 * torch.eye(len(y), dtype=DTYPE)).T
        losses.append(ranking_loss(samples, y))
    if target is not None:
        losses.append(ranking_loss(target, y))
    losses = torch.stack(losses)  # (models, samples)
    if target is not None:
        keep = losses[:-1].median(dim=1).values <= torch.quantile(losses[-1], 0.95)
        losses[:-1][~keep] = float("inf")
    best = losses == losses.min(dim=0, keepdim=True).values
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
