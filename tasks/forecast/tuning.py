"""Ray Tune for the deep forecasters: Optuna TPE search plus ASHA early stopping.

Trials report validation MSE after every epoch; ASHA stops the weak ones at its rungs. Each
trial gets one CPU and one torch thread, so trials run side by side on the cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tasks.forecast.config import TuneConfig
from tasks.forecast.models.base import FitContext

METRIC = "val_mse"


def search_space(kind: str, cfg: TuneConfig, ctx: FitContext) -> dict[str, Any]:
    from ray import tune

    room = ctx.split.n_fit - ctx.horizon - 8  # lookbacks that still leave training samples
    lookbacks = [lb for lb in cfg.lookback if lb < room] or [min(cfg.lookback)]
    space = {
        "lookback": tune.choice(lookbacks),
        "hidden": tune.choice(cfg.hidden),
        "layers": tune.choice(cfg.layers),
        "lr": tune.loguniform(cfg.lr_min, cfg.lr_max),
    }
    if kind == "cnn":
        space["kernel"] = tune.choice(cfg.kernel)
    return space


def _trainable(config: dict[str, Any], kind: str, train: np.ndarray, ctx: FitContext, max_epochs: int) -> None:
    import torch
    from ray import tune

    from tasks.forecast.models.deep import train_epochs

    torch.set_num_threads(1)
    for epoch, val_loss, _ in train_epochs(kind, config, train, ctx, max_epochs):
        tune.report({METRIC: val_loss, "epoch": epoch})


def tune_deep(
    kind: str, train_scaled: np.ndarray, ctx: FitContext, cfg: TuneConfig, name: str, storage: Path,
    fixed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the best hyper-parameters found for `kind` on this series (scaled training part).

    Ray Tune keeps its trial state in `storage/name` (under the run's out_dir); `fixed` settings
    (e.g. samples_per_epoch) are passed to every trial unchanged.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    from tasks.common.ray_runtime import cluster_cpus

    if cfg.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search = OptunaSearch(metric=METRIC, mode="min", seed=ctx.seed)
    else:
        search = BasicVariantGenerator(random_state=ctx.seed)
    scheduler = ASHAScheduler(
        metric=METRIC,
        mode="min",
        time_attr="training_iteration",
        max_t=cfg.max_epochs,
        grace_period=min(cfg.grace_period, cfg.max_epochs),
        reduction_factor=cfg.reduction_factor,
    )
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, kind=kind, train=train_scaled, ctx=ctx, max_epochs=cfg.max_epochs),
        {"cpu": 1},
    )
    tuner = tune.Tuner(
        trainable,
        param_space={**search_space(kind, cfg, ctx), **(fixed or {})},
        tune_config=tune.TuneConfig(
            num_samples=cfg.num_samples,
            scheduler=scheduler,
            search_alg=search,
            max_concurrent_trials=max(1, cluster_cpus()),
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            verbose=0,
        ),
    )
    results = tuner.fit()
    best = results.get_best_result(metric=METRIC, mode="min", scope="all")
    if best.config is None:
        raise RuntimeError(f"Ray Tune found no successful trial for {name}: {results.errors}")
    return dict(best.config)
