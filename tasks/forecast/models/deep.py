"""GRU and 1-D CNN forecasters (torch), multi-output over the horizon.

Input: the last `lookback` scaled values, plus the values one season before each target step
(the seasonal-naive guess, which the network learns to correct). Training follows the study:
fit on the first 75% of the training part, early-stop on the last 25%.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from tasks.forecast.models.base import FitContext, ScaledForecaster, lag_windows, seasonal_context

DEFAULTS: dict[str, Any] = {
    "lookback": 48, "hidden": 32, "layers": 1, "kernel": 3, "lr": 3e-3, "batch_size": 64,
    "samples_per_epoch": 2048,  # a random subset per epoch bounds the cost on long (5-min) series
}


class GRUNet(nn.Module):
    def __init__(self, horizon: int, hidden: int, layers: int, **_: Any) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden + horizon, horizon)

    def forward(self, window: torch.Tensor, seasonal: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(window.unsqueeze(-1))
        return seasonal + self.head(torch.cat([h[-1], seasonal], dim=1))


class CNNNet(nn.Module):
    def __init__(self, horizon: int, hidden: int, layers: int, kernel: int, lookback: int, **_: Any) -> None:
        super().__init__()
        blocks, channels = [], 1
        for _ in range(layers):
            blocks += [nn.Conv1d(channels, hidden, kernel, padding=kernel // 2), nn.ReLU()]
            channels = hidden
        self.conv = nn.Sequential(*blocks, nn.AdaptiveAvgPool1d(4))
        self.head = nn.Linear(hidden * 4 + horizon + 1, horizon)

    def forward(self, window: torch.Tensor, seasonal: torch.Tensor) -> torch.Tensor:
        features = self.conv(window.unsqueeze(1)).flatten(1)
        last = window[:, -1:]
        return seasonal + self.head(torch.cat([features, seasonal, last], dim=1))


NETWORKS = {"gru": GRUNet, "cnn": CNNNet}


def make_samples(y: np.ndarray, origins: np.ndarray, horizon: int, season: int, lookback: int):
    window = torch.as_tensor(lag_windows(y, origins, lookback), dtype=torch.float32)
    seasonal = torch.as_tensor(seasonal_context(y, origins, horizon, season), dtype=torch.float32)
    target_idx = origins[:, None] + np.arange(horizon)[None, :]
    target = torch.as_tensor(y[np.minimum(target_idx, len(y) - 1)], dtype=torch.float32)
    return window, seasonal, target


def train_epochs(
    kind: str, config: dict[str, Any], train: np.ndarray, ctx: FitContext, max_epochs: int
) -> Iterator[tuple[int, float, nn.Module]]:
    """Yield (epoch, validation MSE, network) after every epoch; the caller decides when to stop."""
    config = {**DEFAULTS, **config}
    torch.manual_seed(ctx.seed)
    lookback, h, m = int(config["lookback"]), ctx.horizon, ctx.season
    first = max(lookback, m)
    fit_origins = np.arange(first, ctx.split.n_fit - h + 1)
    val_origins = np.arange(max(first, ctx.split.n_fit), len(train) - h + 1)
    if len(fit_origins) < 8 or len(val_origins) < 1:
        raise ValueError(f"{kind}: too few samples for lookback {lookback} (fit {len(fit_origins)}, val {len(val_origins)})")
    fit = make_samples(train, fit_origins, h, m, lookback)
    val = make_samples(train, val_origins, h, m, lookback)
    net = NETWORKS[kind](horizon=h, **{k: int(config[k]) for k in ("hidden", "layers", "kernel", "lookback")})
    opt = torch.optim.Adam(net.parameters(), lr=float(config["lr"]))
    gen = torch.Generator().manual_seed(ctx.seed)
    batch, per_epoch = int(config["batch_size"]), int(config["samples_per_epoch"])
    for epoch in range(1, max_epochs + 1):
        net.train()
        for idx in torch.randperm(len(fit_origins), generator=gen)[:per_epoch].split(batch):
            opt.zero_grad()
            loss = nn.functional.mse_loss(net(fit[0][idx], fit[1][idx]), fit[2][idx])
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val_loss = nn.functional.mse_loss(net(val[0], val[1]), val[2]).item()
        yield epoch, val_loss, net


class DeepForecaster(ScaledForecaster):
    kind = "gru"

    def __init__(
        self, config: dict[str, Any] | None = None, max_epochs: int = 40, patience: int = 6, samples_per_epoch: int = 2048
    ) -> None:
        super().__init__()
        self.config = {**DEFAULTS, **(config or {}), "samples_per_epoch": samples_per_epoch}
        self.max_epochs, self.patience = max_epochs, patience

    def fit_scaled(self, train: np.ndarray, ctx: FitContext, on_epoch: Callable[[int, float], None] | None = None) -> None:
        self.season = ctx.season
        best_loss, best_state, best_epoch = float("inf"), None, 0
        for epoch, val_loss, net in train_epochs(self.kind, self.config, train, ctx, self.max_epochs):
            if val_loss < best_loss:
                best_loss, best_state, best_epoch = val_loss, copy.deepcopy(net.state_dict()), epoch
            elif epoch - best_epoch >= self.patience:
                break
        net.load_state_dict(best_state)
        self.net = net.eval()
        self.fitted_params = {**{k: self.config[k] for k in DEFAULTS}, "best_epoch": best_epoch, "val_mse": best_loss}

    def forecast_scaled(self, y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        window, seasonal, _ = make_samples(y, origins, horizon, self.season, int(self.config["lookback"]))
        with torch.no_grad():
            return self.net(window, seasonal).double().numpy()


class GRUForecaster(DeepForecaster):
    name = kind = "gru"


class CNNForecaster(DeepForecaster):
    name = kind = "cnn"
