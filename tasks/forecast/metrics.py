"""Forecast errors. sMAPE follows the study: mean(|y - yhat| / (|y| + |yhat|)) in percent, no factor 2."""

from __future__ import annotations

import numpy as np


def smape(y: np.ndarray, yhat: np.ndarray) -> float:
    y, yhat = np.asarray(y, dtype=float), np.asarray(yhat, dtype=float)
    denom = np.abs(y) + np.abs(yhat)
    ratio = np.divide(np.abs(y - yhat), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(100.0 * ratio.mean())


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(yhat))))


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(yhat)) ** 2)))


def mase(y: np.ndarray, yhat: np.ndarray, train: np.ndarray, season: int = 1) -> float:
    """MAE scaled by the in-sample MAE of the seasonal naive forecast on the training part."""
    train = np.asarray(train, dtype=float)
    scale = np.mean(np.abs(train[season:] - train[:-season]))
    return float(mae(y, yhat) / scale) if scale > 0 else float("nan")


def all_metrics(y: np.ndarray, yhat: np.ndarray, train: np.ndarray) -> dict[str, float]:
    return {"smape": smape(y, yhat), "mae": mae(y, yhat), "rmse": rmse(y, yhat), "mase": mase(y, yhat, train)}
